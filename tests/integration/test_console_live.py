"""The console's live routes, driven as a browser's EventSource would be: the ASGI app is
called directly and its events are read as they are sent, while the test changes the store.

- ``/admin/tasks/{id}/log`` streams the lines a fake ``LiveTaskLog`` gives while the step
  runs, hostile text included as it is (the page's script shows it as text), and ends with
  the recorded log once the task is recorded as finished;
- a finished task, or a gateway without ``task_logs``, gets the recorded log at once;
- ``/admin/live?service_id=`` sends the Deploy tab's timeline, escaped, when the service
  changes; ``/admin/live`` a change tick for the lists; neither without a session.

The store is SQLite; the views are projected from it by the test, the live feed polls them.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.types import Message

from domain.commands import parse_order
from domain.task import Task
from gateway.credentials import fingerprint, token_digest
from gateway.screens.console_session import COOKIE, ConsoleSession, seal
from gateway.screens.live_feed import LiveFeed
from gateway.screens.screen_ports import LiveTaskLog, ScreenPorts, screen_routes
from ops.adapters.command_ledger import StoreLedger
from ops.adapters.sealing import PasswordSealer
from ops.store.database import Database
from ops.store.event_store import EventStore
from ops.views.live_changes import SqlLiveChanges
from ops.views.projection_runner import ProjectionRunner
from ops.views.view_queries import SqlViewQueries
from ops.views.view_store import ViewStore
from projections.catalogue import all_views
from tests.fakes.clock import Clock
from tests.support.deployment import wait_until
from tests.support.gateway import STAFF_TOKEN, START, credentials_for_tests, order

HOSTILE = "<script>alert('x')</script>"
KEY = b"a-signing-key-only-for-console-tests-0123"


class FakeTaskLog:
    """Lines the test hands to whoever follows a task (``LiveTaskLog``)."""

    def __init__(self) -> None:
        self.followers: dict[str, list[asyncio.Queue[str | None]]] = {}

    async def follow(self, task_id: str) -> AsyncIterator[str]:
        lines: asyncio.Queue[str | None] = asyncio.Queue()
        self.followers.setdefault(task_id, []).append(lines)
        try:
            while (line := await lines.get()) is not None:
                yield line
        finally:
            self.followers[task_id].remove(lines)

    def say(self, task_id: str, line: str) -> None:
        for lines in self.followers.get(task_id, []):
            lines.put_nowait(line)


@dataclass
class Stream:
    """One open event stream: what the app sent so far, and the means to close it."""

    body: str = ""
    ended: bool = False
    status: int | None = None
    gone: asyncio.Event = field(default_factory=asyncio.Event)

    def events(self) -> list[tuple[str, str]]:
        found = []
        for block in self.body.split("\n\n"):
            lines = block.split("\n")
            names = [line[7:] for line in lines if line.startswith("event: ")]
            data = [line[6:] for line in lines if line.startswith("data: ")]
            if names:
                found.append((names[0], "\n".join(data)))
        return found


class CountedViews:
    """The views, counting the reads of each query (how many a change costs)."""

    def __init__(self, views: SqlViewQueries) -> None:
        self._views = views
        self.reads: Counter[str] = Counter()

    def __getattr__(self, name: str) -> Any:
        query = getattr(self._views, name)

        def counted(*args: Any, **kwargs: Any) -> Any:
            self.reads[name] += 1
            return query(*args, **kwargs)

        return counted


@dataclass
class Live:
    app: Starlette
    store: EventStore
    db: Database
    clock: Clock
    running: Task
    cookie: str
    feed: LiveFeed
    views: CountedViews

    async def get(self, path: str) -> httpx.Response:
        """A page or a fragment, as the signed-in browser asks it."""
        transport = httpx.ASGITransport(app=self.app)
        async with httpx.AsyncClient(
            transport=transport, base_url="http://gateway.test", cookies={COOKIE: self.cookie}
        ) as client:
            return await client.get(path)

    def project(self) -> None:
        views = all_views()
        ProjectionRunner(self.store, ViewStore(self.db, views), views).catch_up()

    async def open(self, path: str, cookie: str | None = None) -> tuple[Stream, asyncio.Task[None]]:
        stream = Stream()
        query = path.split("?", 1)[1] if "?" in path else ""
        cookie = self.cookie if cookie is None else cookie
        scope: dict[str, Any] = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": "GET",
            "scheme": "http",
            "path": path.split("?", 1)[0],
            "raw_path": path.split("?", 1)[0].encode(),
            "query_string": query.encode(),
            "headers": [(b"host", b"gateway.test"), (b"cookie", f"{COOKIE}={cookie}".encode())],
            "client": ("127.0.0.1", 5000),
            "server": ("gateway.test", 80),
        }
        asked = False

        async def receive() -> Message:
            nonlocal asked
            if not asked:
                asked = True
                return {"type": "http.request", "body": b"", "more_body": False}
            await stream.gone.wait()
            return {"type": "http.disconnect"}

        async def send(message: Message) -> None:
            if message["type"] == "http.response.start":
                stream.status = message["status"]
            elif message["type"] == "http.response.body":
                stream.body += message.get("body", b"").decode()
                stream.ended = not message.get("more_body", False)

        return stream, asyncio.ensure_future(self.app(scope, receive, send))


async def closed(stream: Stream, running: asyncio.Task[None]) -> None:
    stream.gone.set()
    await asyncio.wait_for(running, 10)


def plan(step: str, server_id: str) -> Task:
    return Task.plan(
        service_id="1001",
        run=1,
        step=step,
        role=server_id.split("-")[0],
        action=f"ensure {step}",
        server_id=server_id,
        params={},
        depends_on=[],
        now=START,
    )


def live_setup(tmp_path: Path, task_logs: LiveTaskLog | None) -> Iterator[Live]:
    url = f"sqlite:///{tmp_path / 'store.sqlite'}"
    store, db, clock = EventStore(url), Database(url), Clock(START + timedelta(minutes=10))
    ledger = StoreLedger(store, PasswordSealer("a-secret-key-only-for-tests"))
    ledger.order_service(parse_order(order(), now=START, actor="whmcs"))
    running = plan("running", "dns-1")
    running.dispatch(START + timedelta(minutes=4), 3600)
    store.save(running)
    feed = LiveFeed(SqlLiveChanges(db), every_s=0.05)
    views = CountedViews(SqlViewQueries(db))
    ports = ScreenPorts(
        ledger=ledger,
        views=views,  # type: ignore[arg-type]
        credentials=credentials_for_tests(),
        clock=clock,
        live=feed,
        signing_key=KEY,
        task_logs=task_logs,
    )
    expires = int(clock().timestamp()) + 3600
    signed = fingerprint(KEY, token_digest(STAFF_TOKEN))
    session = ConsoleSession("staff", frozenset({"staff"}), expires, "c", signed)
    app = Starlette(routes=screen_routes(ports))
    live = Live(app, store, db, clock, running, seal(session, KEY), feed, views)
    live.project()
    try:
        yield live
    finally:
        store.close()
        db.close()


@pytest.fixture
def task_log() -> FakeTaskLog:
    return FakeTaskLog()


@pytest.fixture
def live(tmp_path: Path, task_log: FakeTaskLog) -> Iterator[Live]:
    yield from live_setup(tmp_path, task_log)


def finish(live: Live, log: list[str]) -> None:
    assert live.running.succeed(1, START + timedelta(minutes=11), changed=True, log=log)
    live.store.save(live.running)
    live.project()


async def test_a_running_step_streams_its_lines_then_the_recorded_log(
    live: Live, task_log: FakeTaskLog
) -> None:
    task_id = str(live.running.id)
    stream, running = await live.open(f"/admin/tasks/{task_id}/log")
    try:

        async def following() -> bool:
            return bool(task_log.followers.get(task_id))

        await wait_until(following, 10, "the route to follow the task's log")
        # a lone CR ends an SSE line too: a node's line must not start a field of its own
        forged = 'x\revent: ended\rdata: {"state": "succeeded", "log": []}\r\rretry: 1'
        for line in ("connecting to dns-1", HOSTILE, "two\nlines", forged):
            task_log.say(task_id, line)

        async def four_lines() -> bool:
            return len(stream.events()) == 4

        await wait_until(four_lines, 10, "four streamed lines", lambda: stream.body)
        assert stream.status == 200 and not stream.ended
        assert "\r" not in stream.body
        assert stream.events() == [
            ("line", "connecting to dns-1"),
            ("line", HOSTILE),  # data as sent: the page's script appends it as text
            ("line", "two\nlines"),
            ("line", 'x\nevent: ended\ndata: {"state": "succeeded", "log": []}\n\nretry: 1'),
        ]
        finish(live, ["recorded line"])

        async def ended() -> bool:
            return stream.ended

        await wait_until(ended, 10, "the stream to end once the step ended", lambda: stream.body)
        name, data = stream.events()[-1]
        assert name == "ended"
        recorded = json.loads(data)
        assert recorded["state"] == "succeeded"
        assert "recorded line" in recorded["log"]
        assert task_log.followers[task_id] == []  # the follow was let go
    finally:
        await closed(stream, running)


async def test_a_finished_task_gets_its_recorded_log_at_once(live: Live) -> None:
    finish(live, ["all done", HOSTILE])
    stream, running = await live.open(f"/admin/tasks/{live.running.id}/log")
    await asyncio.wait_for(running, 10)
    assert stream.ended
    [(name, data)] = stream.events()
    assert name == "ended"
    assert HOSTILE in json.loads(data)["log"]


async def test_without_live_logs_a_running_task_gets_its_log_so_far(tmp_path: Path) -> None:
    for live in live_setup(tmp_path, None):
        stream, running = await live.open(f"/admin/tasks/{live.running.id}/log")
        await asyncio.wait_for(running, 10)
        [(name, data)] = stream.events()
        assert (name, json.loads(data)["state"]) == ("ended", "dispatched")


class AwayTaskLog:
    """A live log whose broker is away: every follow ends at once, with no line."""

    async def follow(self, task_id: str) -> AsyncIterator[str]:
        for line in ():
            yield line


@pytest.fixture
def away_live(tmp_path: Path) -> Iterator[Live]:
    yield from live_setup(tmp_path, AwayTaskLog())


async def test_with_no_live_lines_to_be_had_the_stream_waits_for_the_recorded_log(
    away_live: Live,
) -> None:
    stream, running = await away_live.open(f"/admin/tasks/{away_live.running.id}/log")
    try:
        await asyncio.sleep(0.3)  # a few ticks of the feed: it must not end meanwhile
        assert not stream.ended and stream.events() == []
        finish(away_live, ["recorded line"])

        async def ended() -> bool:
            return stream.ended

        await wait_until(ended, 10, "the stream to end once the step ended", lambda: stream.body)
        [(name, data)] = stream.events()
        assert name == "ended" and "recorded line" in json.loads(data)["log"]
    finally:
        await closed(stream, running)


async def test_the_deploy_tab_and_the_lists_hear_of_a_change(live: Live) -> None:
    timeline, timeline_running = await live.open("/admin/live?service_id=1001")
    ticks, ticks_running = await live.open("/admin/live")
    try:

        async def both_open() -> bool:  # and the feed has read where the views stand
            opened = timeline.body.startswith("retry:") and ticks.body.startswith("retry:")
            return opened and live.feed.position > 0

        await wait_until(both_open, 10, "both streams to open")
        # a page opened while the feed was starting may have read once more already
        seen_timelines, seen_ticks = len(timeline.events()), len(ticks.events())
        finish(live, [f"log {HOSTILE}"])

        async def heard() -> bool:
            return len(timeline.events()) > seen_timelines and len(ticks.events()) > seen_ticks

        await wait_until(heard, 10, "both streams to hear the change", lambda: timeline.body)
        name, html = timeline.events()[-1]
        assert name == "timeline"
        assert html.startswith('<ol id="deploy-timeline"')
        assert 'data-step="running" data-state="done"' in html
        assert ticks.events()[-1][0] == "change"
    finally:
        await closed(timeline, timeline_running)
        await closed(ticks, ticks_running)


async def test_the_live_routes_need_a_session(live: Live) -> None:
    for path in ("/admin/live", f"/admin/tasks/{live.running.id}/log"):
        stream, running = await live.open(path, cookie="forged.cookie")
        await asyncio.wait_for(running, 10)
        assert stream.status == 303 and "event:" not in stream.body


async def feed_started(live: Live) -> tuple[Stream, asyncio.Task[None]]:
    """A list's stream kept open, so that the feed runs and knows where the views stand."""
    ticks, running = await live.open("/admin/live")

    async def started() -> bool:
        return live.feed.position > 0 and len(ticks.events()) > 0

    await wait_until(started, 10, "the feed to start", lambda: ticks.body)
    return ticks, running


def live_src(html: str) -> str:
    found = re.search(r'data-live-src="([^"]+)"', html)
    assert found is not None
    return found.group(1).replace("&amp;", "&")


async def test_a_change_between_the_page_and_its_stream_is_sent_at_once(live: Live) -> None:
    ticks, ticks_running = await feed_started(live)
    try:
        deploy = await live.get("/admin/services/1001?tab=deploy")
        services = await live.get("/admin/services")
        rendered_at = live.feed.position
        assert live_src(services.text) == f"/admin/live?since={rendered_at}"
        assert 'data-step="running" data-state="running"' in deploy.text
        finish(live, ["done"])  # lands before either page opens its stream

        async def fed() -> bool:
            return live.feed.position > rendered_at

        await wait_until(fed, 10, "the feed to see the change")
        timeline, timeline_running = await live.open(live_src(deploy.text))
        changes, changes_running = await live.open(live_src(services.text))
        try:

            async def both_sent() -> bool:
                return bool(timeline.events()) and bool(changes.events())

            await wait_until(both_sent, 10, "the change at once", lambda: timeline.body)
            name, html = timeline.events()[0]
            assert name == "timeline" and 'data-step="running" data-state="done"' in html
            assert changes.events()[0] == ("change", str(live.feed.position))
        finally:
            await closed(timeline, timeline_running)
            await closed(changes, changes_running)
        # a list's stream opened at the position its page was rendered at waits for a change
        quiet, quiet_running = await live.open(f"/admin/live?since={live.feed.position}")
        try:
            await asyncio.sleep(0.3)  # a few ticks of the feed: nothing to send
            assert quiet.events() == []
        finally:
            await closed(quiet, quiet_running)
    finally:
        await closed(ticks, ticks_running)


async def test_pages_asking_a_list_at_one_position_cost_one_read(live: Live) -> None:
    ticks, ticks_running = await feed_started(live)
    try:
        position = live.feed.position
        before = live.views.reads["services_page"], live.views.reads["tasks"]
        paths = [
            f"/admin/services?fragment=1&q=&status=&mode=&cursor=&at={position}",
            f"/admin/tasks?fragment=1&state=&service_id=&server_id=&stuck=&at={position}",
        ]
        replies = await asyncio.gather(*(live.get(path) for path in paths * 5))
        assert all(reply.status_code == 200 for reply in replies)
        assert {reply.text for reply in replies[0::2]} == {replies[0].text}
        assert 'data-service-id="1001"' in replies[0].text
        assert f'data-task-id="{live.running.id}"' in replies[1].text
        after = live.views.reads["services_page"], live.views.reads["tasks"]
        assert (after[0] - before[0], after[1] - before[1]) == (1, 1)
        # polling (no position) or a position the feed has left reads
        await live.get(paths[0].replace(f"&at={position}", ""))
        await live.get(paths[0].replace(f"&at={position}", "&at=1"))
        assert live.views.reads["services_page"] == after[0] + 2
    finally:
        await closed(ticks, ticks_running)


async def test_log_streams_of_one_task_read_it_once_per_change(
    live: Live, task_log: FakeTaskLog
) -> None:
    task_id = str(live.running.id)
    streams = [await live.open(f"/admin/tasks/{task_id}/log") for _ in range(3)]
    try:

        async def following() -> bool:
            return len(task_log.followers.get(task_id, [])) == 3 and live.feed.position > 0

        await wait_until(following, 10, "three pages to follow the task's log")
        await asyncio.sleep(0.5)  # ten ticks of the feed with no change: no read
        quiet = live.views.reads["task"]
        await asyncio.sleep(0.5)
        assert live.views.reads["task"] == quiet
        other = plan("other", "web-1")
        live.store.save(other)  # the service changes, the task does not
        live.project()

        async def read_once() -> bool:
            return live.views.reads["task"] > quiet

        await wait_until(read_once, 10, "the task to be read again")
        await asyncio.sleep(0.3)
        # once for the three pages (twice should the feed see the change in two steps), not
        # once per page
        assert live.views.reads["task"] - quiet < len(streams)
        assert not any(stream.ended for stream, _ in streams)
    finally:
        for stream, running in streams:
            await closed(stream, running)
