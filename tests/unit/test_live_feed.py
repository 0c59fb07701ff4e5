"""The live feed: one poll of the views per tick, however many pages watch, and each page
woken only by changes to what it shows."""

from __future__ import annotations

import asyncio
import contextlib

import pytest

from gateway.screens.live_feed import LiveFeed, Watch
from tests.support.budget import budget


class Views:
    """A ChangeSource whose position and changed services the test moves."""

    def __init__(self) -> None:
        self.position = 10
        self.changed: dict[int, str] = {}  # position → the service it changed
        self.asked = 0
        self.failing = False

    async def moved(self, most_s: float) -> None:
        await asyncio.sleep(most_s)

    async def quiet(self) -> None:
        self.quieted = getattr(self, "quieted", 0) + 1

    def changes_after(self, position: int | None) -> tuple[int, set[str]]:
        self.asked += 1
        if self.failing:
            raise ConnectionError("the views' database is away")
        if position is None:
            return self.position, set()
        return self.position, {s for p, s in self.changed.items() if p > position}

    def change(self, service_id: str) -> None:
        self.position += 1
        self.changed[self.position] = service_id


async def started(feed: LiveFeed, views: Views, *watches: Watch) -> None:
    """The feed has its first answer; the pages opened before it have read again once (a
    change may have landed between their first read and that answer)."""
    while views.asked == 0 or feed.position != views.position:
        await asyncio.sleep(0.001)
    for watch in watches:
        assert await watch.next(budget(5)) == views.position


async def test_many_pages_cost_one_poll_a_tick_and_wake_only_for_their_service() -> None:
    views = Views()
    feed = LiveFeed(views, every_s=0.01)
    with contextlib.ExitStack() as pages:
        a1, a2 = pages.enter_context(feed.watch("a")), pages.enter_context(feed.watch("a"))
        b, every = pages.enter_context(feed.watch("b")), pages.enter_context(feed.watch(None))
        others = [pages.enter_context(feed.watch("c")) for _ in range(200)]
        await asyncio.wait_for(started(feed, views, a1, a2, b, every, *others), budget(5))
        asked = views.asked
        views.change("a")
        assert await a1.next(budget(5)) == 11
        assert await a2.next(budget(5)) == 11
        assert await every.next(budget(5)) == 11
        assert await b.next(0.05) is None  # not b's change
        assert all(other.position == 10 for other in others)  # none of them woken
        # ticks, not pages: 204 open pages asked the views a handful of times
        assert views.asked - asked < 50


async def test_changes_coalesce_into_the_latest_position() -> None:
    views = Views()
    feed = LiveFeed(views, every_s=0.01)
    with feed.watch("a") as a:
        await asyncio.wait_for(started(feed, views, a), budget(5))
        views.change("a")
        views.change("a")
        views.change("a")
        assert await a.next(budget(5)) == 13
        assert await a.next(0.05) is None


async def test_the_pages_of_one_service_read_its_state_once_per_change() -> None:
    views = Views()
    feed = LiveFeed(views, every_s=0.01)
    reads = 0

    async def read() -> str:
        nonlocal reads
        reads += 1
        await asyncio.sleep(0.01)
        return "state"

    answers = await asyncio.gather(*(feed.shared("a", 11, read) for _ in range(50)))
    assert answers == ["state"] * 50 and reads == 1


async def test_the_feed_rides_out_the_views_being_away() -> None:
    views = Views()
    views.failing = True
    feed = LiveFeed(views, every_s=0.01)
    with feed.watch("a") as a:
        while views.asked < 3:
            await asyncio.sleep(0.005)
        views.failing = False
        await asyncio.wait_for(started(feed, views, a), budget(5))
        views.change("a")
        assert await a.next(budget(5)) == 11


@pytest.mark.parametrize("pages", [1, 3])
async def test_the_poll_stops_when_the_last_page_closes(pages: int) -> None:
    views = Views()
    feed = LiveFeed(views, every_s=0.01)
    with contextlib.ExitStack() as open_pages:
        for _ in range(pages):
            open_pages.enter_context(feed.watch("a"))
        await asyncio.wait_for(started(feed, views), budget(5))
    await asyncio.sleep(0.05)
    asked = views.asked
    await asyncio.sleep(0.05)
    assert views.asked == asked
