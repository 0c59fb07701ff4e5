"""A page that opens while the live feed is starting reads again once the feed's first
answer comes: a change landing between the page's first read and that answer is not lost."""

from __future__ import annotations

import asyncio

from gateway.screens.live_feed import LiveFeed


class Source:
    """The views' position, moved by the test; every service changes with it."""

    def __init__(self) -> None:
        self.position = 5
        self.answered = 0

    async def moved(self, most_s: float) -> None:
        await asyncio.sleep(most_s)

    async def quiet(self) -> None:
        self.quieted = getattr(self, "quieted", 0) + 1

    def changes_after(self, position: int | None) -> tuple[int, set[str]]:
        self.answered += 1
        if position is None or self.position <= position:
            return self.position, set()
        return self.position, {"1001"}


def test_a_page_opened_before_the_first_answer_reads_again_and_then_only_on_changes() -> None:
    async def scenario() -> None:
        source = Source()
        feed = LiveFeed(source, every_s=0.01)
        with feed.watch("1001") as watch:
            # the page has read; the change lands before the feed's first answer
            source.position = 6
            assert await watch.next(timeout=5) == 6
            assert await watch.next(timeout=0.1) is None  # nothing more until a change
            source.position = 7
            assert await watch.next(timeout=5) == 7
        with feed.watch("1001") as later:  # the feed starts again: nothing new since
            await asyncio.sleep(0.1)
            assert await later.next(timeout=0.1) is None

    asyncio.run(scenario())
