"""The usage desk over the event store (SQLite): a sync that ends after its lease ran out and
another was queued records nothing (``superseded``) and the newer one lists the node; a staff
refresh asked after the node answered makes the desk's listing end with one more sync queued,
one asked while the listing was still on its way does not."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from domain.server_usage import ServerUsage, UsageCadence
from handlers.usage_desk import UsageDesk
from ops.adapters.usage_book import SNAPSHOT_EVERY, StoreUsageBook
from ops.store.event_store import EventStore

T0 = datetime(2026, 12, 3, 10, 0, tzinfo=UTC)
CADENCE = UsageCadence(period_s=3600, fresh_s=0, retry_s=30, lease_s=300)


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now


class HeldNode:
    """A node whose ``v-list-users`` answers when the test lets it (``answer``)."""

    def __init__(self, clock: Clock) -> None:
        self.asked = asyncio.Event()
        self.answer = asyncio.Event()
        self.fail = False
        self.listings = 0
        self._clock = clock

    async def driver(self, server_id: str) -> Any:
        return self

    async def list_json(self, argv: list[str]) -> Any:
        self.listings += 1
        self.asked.set()
        await self.answer.wait()
        if self.fail:
            raise ConnectionError("connection refused")
        return {"alice": {"U_DISK": "5", "U_BANDWIDTH": "1"}}

    async def probe_json(self, argv: list[str]) -> Any:
        return None


@pytest.fixture
def store(tmp_path: Path) -> Iterator[EventStore]:
    found = EventStore(f"sqlite:///{tmp_path / 'hw.sqlite'}")
    try:
        yield found
    finally:
        found.close()


def events(store: EventStore, book: StoreUsageBook) -> list[str]:
    usage = book.usage("web1")
    assert usage is not None
    stored = store.recorder.select_events(usage.id)
    return [type(store.app.mapper.to_domain_event(s)).__name__ for s in stored]


async def test_a_sync_ending_after_another_was_queued_records_nothing(store: EventStore) -> None:
    clock = Clock()
    node = HeldNode(clock)
    book = StoreUsageBook(store)
    desk = UsageDesk(book, node, lambda: CADENCE, clock)
    assert await desk.request("web1", "tick", tick=True) == "queued"
    first = asyncio.ensure_future(desk.sync("web1", 1))
    await node.asked.wait()
    clock.now = T0 + timedelta(seconds=301)  # the lease ran out: the process looks dead
    assert await desk.request("web1", "tick", tick=True) == "queued"
    node.answer.set()
    assert await first == "superseded"
    assert events(store, book) == ["Opened", "SyncQueued", "SyncStarted", "SyncQueued"]
    node.fail = True  # nor does a late failure record
    assert await desk.sync("web1", 1) == "not_queued"
    node.fail = False
    assert await desk.sync("web1", 2) == "listed"
    usage = book.usage("web1")
    assert usage is not None and usage.collected_at == clock.now and usage.failures == 0


async def test_a_failure_of_a_superseded_sync_records_nothing(store: EventStore) -> None:
    clock = Clock()
    node = HeldNode(clock)
    node.fail = True
    book = StoreUsageBook(store)
    desk = UsageDesk(book, node, lambda: CADENCE, clock)
    await desk.request("web1", "tick", tick=True)
    first = asyncio.ensure_future(desk.sync("web1", 1))
    await node.asked.wait()
    clock.now = T0 + timedelta(seconds=301)
    await desk.request("web1", "refresh:staff")
    node.answer.set()
    assert await first == "superseded"
    assert events(store, book)[-1] == "SyncQueued"


@pytest.mark.parametrize(("after_the_answer", "syncs"), [(True, 2), (False, 1)])
async def test_a_staff_refresh_after_the_answer_queues_one_more_sync(
    store: EventStore, after_the_answer: bool, syncs: int
) -> None:
    clock = Clock()
    node = HeldNode(clock)
    book = StoreUsageBook(store)
    loop = asyncio.get_running_loop()
    recording = asyncio.Event()  # the desk has the node's answer and is about to record it
    record = threading.Event()  # ... and may

    class Book:
        """The store's book, holding the record of the listing until the test lets it."""

        def usage(self, server_id: str) -> ServerUsage | None:
            return book.usage(server_id)

        def update(self, server_id: str, decide: Any, busy: str) -> ServerUsage | None:
            return book.update(server_id, decide, busy)

        def record_listings(self, server_id: str, decide: Any, busy: str) -> None:
            loop.call_soon_threadsafe(recording.set)
            assert record.wait(30)
            book.record_listings(server_id, decide, busy)

    desk = UsageDesk(Book(), node, lambda: CADENCE, clock)
    assert await desk.request("web1", "refresh:staff") == "queued"
    first = asyncio.ensure_future(desk.sync("web1", 1))
    await node.asked.wait()
    clock.now += timedelta(seconds=1)
    if after_the_answer:
        node.answer.set()
        await recording.wait()
        clock.now += timedelta(seconds=1)
    for _ in range(3):
        assert await desk.request("web1", "refresh:staff") == "joined"
    clock.now += timedelta(seconds=1)
    node.answer.set()
    record.set()
    assert await first == "listed"
    usage = book.usage("web1")
    assert usage is not None and usage.syncs == syncs
    assert (usage.sync is not None) == (syncs == 2)
    assert node.listings == 1


@pytest.fixture
def either_store(database_url: str) -> Iterator[EventStore]:
    found = EventStore(database_url)
    try:
        yield found
    finally:
        found.close()


async def test_a_nodes_usage_loads_from_its_snapshot_not_all_its_events(
    either_store: EventStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Sixty syncs (180 events and more): a tick loads the snapshot and few events, and the
    state is what all the events make (SQLite and PostgreSQL)."""
    store = either_store
    clock = Clock()
    node = HeldNode(clock)
    node.answer.set()
    book = StoreUsageBook(store)
    desk = UsageDesk(book, node, lambda: CADENCE, clock)
    for number in range(1, 61):
        clock.now = T0 + timedelta(hours=number)
        assert await desk.request("web1", "tick", tick=True) == "queued"
        assert await desk.sync("web1", number) == "listed"
    clock.now += timedelta(hours=1)
    await desk.request("web1", "tick", tick=True)
    node.asked.clear()
    node.answer.clear()
    sync = asyncio.ensure_future(desk.sync("web1", 61))
    await node.asked.wait()
    await desk.request("web1", "refresh:staff")  # a relist ask in the state: kept too
    read: list[int] = []
    events_get = store.app.events.get

    def counted(*args: Any, **kwargs: Any) -> Any:
        found = list(events_get(*args, **kwargs))
        read.append(len(found))
        return found

    monkeypatch.setattr(store.app.events, "get", counted)
    loaded = book.usage("web1")
    assert loaded is not None and sum(read) < SNAPSHOT_EVERY
    monkeypatch.undo()
    whole: ServerUsage = store.app.repository.get(loaded.id)  # every event, no snapshot
    assert whole.version > 180 and loaded.version == whole.version
    assert vars(loaded) == vars(whole) and loaded.relist_at is not None
    node.answer.set()
    assert await sync == "listed"
