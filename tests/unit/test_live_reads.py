"""A page's live reads: its own first read at once (a change between the page's render and
its stream is not missed), then one read per change, shared by every page at that
position; with ``quiet_s`` the last answer again when nothing changes."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from gateway.screens.live_feed import LiveFeed
from gateway.screens.live_reads import live_reads
from tests.support.budget import budget


class Views:
    """A ChangeSource whose position the test moves, and the state a page reads."""

    def __init__(self) -> None:
        self.position = 5
        self.changed: dict[int, str] = {}
        self.state = "rendered"
        self.reads = 0

    def changes_after(self, position: int | None) -> tuple[int, set[str]]:
        if position is None:
            return self.position, set()
        return self.position, {s for p, s in self.changed.items() if p > position}

    def change(self, service_id: str, state: str) -> None:
        self.state = state
        self.position += 1
        self.changed[self.position] = service_id

    async def read(self) -> str:
        self.reads += 1
        return self.state


async def test_the_first_read_is_at_once_and_sees_a_change_made_after_the_render() -> None:
    views = Views()
    feed = LiveFeed(views, every_s=0.01)
    views.state = "changed after the page was rendered"  # before the stream opens
    reads = live_reads(feed, "a", "k:a", views.read)
    assert await asyncio.wait_for(anext(reads), budget(5)) == (
        "changed after the page was rendered"
    )
    await reads.aclose()


async def test_each_change_is_read_once_for_every_page_sharing_the_key() -> None:
    views = Views()
    feed = LiveFeed(views, every_s=0.01)
    pages: list[AsyncIterator[str]] = [live_reads(feed, "a", "k:a", views.read) for _ in range(5)]
    try:
        firsts = await asyncio.wait_for(asyncio.gather(*(anext(p) for p in pages)), budget(5))
        assert firsts == ["rendered"] * 5
        # the feed's start may wake them once (a change may have landed before its first
        # answer): let that settle before the change the test makes
        while feed.position != views.position:
            await asyncio.sleep(0.005)
        own_reads = views.reads
        views.change("a", "active")
        for page in pages:
            found = await asyncio.wait_for(anext(page), budget(5))
            while found != "active":  # the start's re-read, if it came first
                found = await asyncio.wait_for(anext(page), budget(5))
        assert views.reads - own_reads <= 2  # one per position (the start's, the change's)
    finally:
        for page in pages:
            await page.aclose()  # type: ignore[attr-defined]


async def test_a_quiet_page_gets_its_last_answer_again_without_a_read() -> None:
    views = Views()
    feed = LiveFeed(views, every_s=0.01)
    reads = live_reads(feed, "a", "k:a", views.read, quiet_s=0.02)
    try:
        assert await asyncio.wait_for(anext(reads), budget(5)) == "rendered"
        while feed.position != views.position:
            await asyncio.sleep(0.005)
        for _ in range(3):
            assert await asyncio.wait_for(anext(reads), budget(5)) == "rendered"
        assert views.reads <= 2  # its own, and at most the feed start's
    finally:
        await reads.aclose()
