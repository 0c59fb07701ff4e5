"""The cron runner: each job once per period across every scheduler, on SQLite and PostgreSQL.

Unit tests drive ``Scheduler.run_due`` with a fake clock; the acceptance test runs two real
``hostwright serve scheduler`` processes against RabbitMQ and reads every published tick
straight off a queue of its own (no inbox), so a period run twice would show as two messages.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from ops.messaging.amqp_transport import AmqpTransport
from ops.messaging.inprocess_transport import InProcessTransport
from ops.messaging.topology import PIPELINE_BINDINGS, QUEUES
from ops.messaging.transport import Delivery
from ops.services.cron_jobs import cron_jobs, publish_tick, tick_message
from ops.services.schedule_claims import ClaimStore
from ops.services.scheduler import Job, Scheduler, Tick
from ops.settings import Settings, SettingsError
from ops.store.database import Database
from tests.fakes.clock import SecondsClock
from tests.support.processes import HostwrightProcess, wait_for

T0 = 1_800_000_000.0  # a period boundary for every period used here


class RunningClock(SecondsClock):
    """Real time going by from ``now``, plus whatever the test adds to ``now``."""

    def __init__(self, now: float = T0) -> None:
        super().__init__(now)
        self._began = time.monotonic()

    def __call__(self) -> float:
        return self.now + time.monotonic() - self._began


class Recorder:
    """An in-process job that remembers each tick it ran."""

    def __init__(self) -> None:
        self.ticks: list[Tick] = []

    async def __call__(self, tick: Tick) -> None:
        self.ticks.append(tick)

    def periods(self, job: str) -> list[int]:
        return [tick.period for tick in self.ticks if tick.job == job]


async def settle(*schedulers: Scheduler) -> None:
    for scheduler in schedulers:
        await scheduler.finish()


@pytest.fixture
def open_db(database_url: str) -> Iterator[Callable[[], Database]]:
    """Opens connections of their own to this test's database (as another process would);
    closes them all after the test."""
    opened: list[Database] = []

    def open_one() -> Database:
        opened.append(Database(database_url))
        return opened[-1]

    yield open_one
    for database in opened:
        database.close()


@pytest.fixture
def db(open_db: Callable[[], Database]) -> Database:
    return open_db()


async def test_each_period_runs_once_across_schedulers(
    open_db: Callable[[], Database],
) -> None:
    clock = SecondsClock(T0)
    recorder = Recorder()
    jobs = [Job("fast", 1.0, recorder), Job("slow", 5.0, recorder)]
    # Two Database objects: two schedulers as apart as two processes.
    first = Scheduler(jobs, ClaimStore(open_db()), name="a", clock=clock)
    second = Scheduler(jobs, ClaimStore(open_db()), name="b", clock=clock)
    for step in range(40):  # ten seconds in quarter seconds, both schedulers at every step
        clock.now = T0 + step * 0.25
        await second.run_due()
        await first.run_due()
        await first.run_due()
    await settle(first, second)
    assert recorder.periods("fast") == [int(T0) + n for n in range(10)]
    assert recorder.periods("slow") == [int(T0) // 5, int(T0) // 5 + 1]


async def test_only_one_of_many_concurrent_claims_wins(
    open_db: Callable[[], Database],
) -> None:
    """Four claimants at once, each with its own connection and a table none has yet made
    (PostgreSQL: the CREATE TABLE race too)."""
    barrier = threading.Barrier(4)
    won: list[bool] = []
    stores = [ClaimStore(open_db()) for _ in range(4)]

    def claim(n: int) -> None:
        store = stores[n]
        barrier.wait()
        won.append(store.claim("retries", 42, 1.0, f"claimant-{n}", T0))

    threads = [threading.Thread(target=claim, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert sorted(won) == [False] * 3 + [True]
    assert [period for period, _ in ClaimStore(open_db()).claims("retries")] == [42]


async def test_missed_periods_are_not_made_up(db: Database) -> None:
    clock = SecondsClock(T0)
    recorder = Recorder()
    scheduler = Scheduler([Job("stuck", 10.0, recorder)], ClaimStore(db), clock=clock)
    for now in (T0, T0 + 1000.0, T0 + 1005.0):  # down for a hundred periods in between
        clock.now = now
        await scheduler.run_due()
        await settle(scheduler)
    first = int(T0) // 10
    assert recorder.periods("stuck") == [first, first + 100]


async def test_a_failing_job_is_logged_and_runs_again_next_period(
    db: Database, caplog: pytest.LogCaptureFixture
) -> None:
    clock = SecondsClock(T0)
    recorder = Recorder()
    attempts: list[int] = []

    async def broken(tick: Tick) -> None:
        attempts.append(tick.period)
        raise RuntimeError("node unreachable")

    scheduler = Scheduler(
        [Job("broken", 1.0, broken), Job("fine", 1.0, recorder)], ClaimStore(db), clock=clock
    )
    with caplog.at_level(logging.ERROR, logger="ops.services.scheduler"):
        for step in range(3):
            clock.now = T0 + step
            await scheduler.run_due()
            await settle(scheduler)
    assert attempts == [int(T0), int(T0) + 1, int(T0) + 2]
    assert recorder.periods("fine") == attempts
    failures = [r for r in caplog.records if "broken failed" in r.getMessage()]
    assert len(failures) == 3 and all(r.exc_info for r in failures)


async def test_a_job_still_running_is_not_started_again(db: Database) -> None:
    clock = SecondsClock(T0)
    release = asyncio.Event()
    started: list[int] = []

    async def slow(tick: Tick) -> None:
        started.append(tick.period)
        await release.wait()

    claims = ClaimStore(db)
    scheduler = Scheduler([Job("slow", 1.0, slow)], claims, clock=clock)
    await scheduler.run_due()
    await asyncio.sleep(0)
    clock.now = T0 + 1
    assert await scheduler.run_due() == []
    release.set()
    await settle(scheduler)
    clock.now = T0 + 2
    await scheduler.run_due()
    await settle(scheduler)
    assert started == [int(T0), int(T0) + 2]
    # the skipped period stays unclaimed: another scheduler may still run it
    assert [period for period, _ in claims.claims("slow")] == [int(T0), int(T0) + 2]


async def test_old_claims_are_pruned(db: Database) -> None:
    claims = ClaimStore(db, retention_s=5.0)
    for n in range(30):
        assert claims.claim("retries", n, 1.0, "a", T0 + n)
    assert [period for period, _ in claims.claims("retries")] == list(range(24, 30))
    assert claims.claim("stuck", 0, 10.0, "a", T0)  # another job's claims are its own
    assert len(claims.claims("retries")) == 6
    assert not claims.claim("retries", 29, 1.0, "b", T0 + 29)


async def test_the_loop_runs_every_period_in_real_time(db: Database) -> None:
    recorder = Recorder()
    scheduler = Scheduler([Job("quick", 0.1, recorder)], ClaimStore(db))
    stop = asyncio.Event()
    began = time.time()
    running = asyncio.ensure_future(scheduler.run(stop))
    await asyncio.sleep(0.75)
    stop.set()
    await running
    ended = time.time()
    periods = recorder.periods("quick")
    inside = range(math.ceil(began / 0.1), math.floor(ended / 0.1))
    assert len(periods) == len(set(periods)) and set(inside) <= set(periods), (periods, inside)


class SlowClaims(ClaimStore):
    """Claims that take a whole period of the fake clock, or fail the first ``failures`` times."""

    def __init__(
        self, db: Database, clock: SecondsClock, *, takes: float, failures: int = 0
    ) -> None:
        super().__init__(db)
        self._clock = clock
        self._takes = takes
        self._failures = failures

    def claim(self, job: str, period: int, period_s: float, claimed_by: str, now: float) -> bool:
        self._clock.now += self._takes
        if self._failures > 0:
            self._failures -= 1
            raise OSError("database unreachable")
        return super().claim(job, period, period_s, claimed_by, now)


async def run_until(scheduler: Scheduler, done: Callable[[], bool], timeout: float) -> None:
    stop = asyncio.Event()
    running = asyncio.ensure_future(scheduler.run(stop))
    deadline = time.monotonic() + timeout
    while not done() and time.monotonic() < deadline:
        await asyncio.sleep(0.01)
    stop.set()
    await running


async def test_a_period_that_began_during_a_slow_round_is_not_skipped(db: Database) -> None:
    clock = RunningClock(T0 + 0.05)
    recorder = Recorder()
    claims = SlowClaims(db, clock, takes=0.25)  # every claim ends in the next period
    scheduler = Scheduler([Job("retries", 0.25, recorder)], claims, clock=clock)
    await run_until(scheduler, lambda: len(recorder.ticks) >= 6, timeout=3.0)
    first = int(T0 / 0.25)
    assert recorder.periods("retries")[:6] == [first + n for n in range(6)]


async def test_a_failed_claim_is_tried_again_within_the_period(
    db: Database, caplog: pytest.LogCaptureFixture
) -> None:
    clock = SecondsClock(T0 + 10.0)
    recorder = Recorder()
    claims = SlowClaims(db, clock, takes=0.0, failures=2)
    scheduler = Scheduler([Job("stuck", 100.0, recorder)], claims, clock=clock, retry_s=0.05)
    with caplog.at_level(logging.ERROR, logger="ops.services.scheduler"):
        await run_until(scheduler, lambda: bool(recorder.ticks), timeout=3.0)
    assert recorder.periods("stuck") == [int(T0) // 100]
    assert len([r for r in caplog.records if "cannot claim stuck" in r.getMessage()]) == 2


def test_jobs_and_ticks_are_validated() -> None:
    with pytest.raises(ValueError, match="job name"):
        Job("cron.retries", 1.0, Recorder())
    with pytest.raises(ValueError, match="above 0"):
        Job("retries", 0.0, Recorder())
    with pytest.raises(ValueError, match="unique"):
        Scheduler([Job("a", 1.0, Recorder())] * 2, ClaimStore(Database("sqlite:///unused")))
    for body in (b"", b"[]", b'{"job": "x", "period": -1, "period_s": 1}', b'{"job": "x"}'):
        with pytest.raises(ValueError):
            Tick.from_json(body)
    with pytest.raises(SettingsError, match="HOSTWRIGHT_CRON_STUCK_S"):
        Settings.load({"HOSTWRIGHT_CRON_STUCK_S": "0"})
    with pytest.raises(ValueError, match="no such cron job: nightly"):
        cron_jobs(Settings.load({}), InProcessTransport("x"), {"nightly": Recorder()})


def test_the_job_table_and_the_published_message() -> None:
    settings = Settings.load({"HOSTWRIGHT_CRON_RETRIES_S": "0.5"})
    recorder = Recorder()
    jobs = cron_jobs(settings, InProcessTransport("x"), {"tickets": recorder})
    assert {job.name: job.period_s for job in jobs} == {
        "retries": 0.5,
        "stuck": 10.0,
        "terminations": 30.0,
        "tickets": 30.0,
        "inbox": 600.0,
        "usage": 30.0,
    }
    assert next(job for job in jobs if job.name == "tickets").action is recorder
    assert "cron.*" in PIPELINE_BINDINGS
    message = tick_message(Tick("retries", 3_600_000_001, 0.5))
    assert message.routing_key == "cron.retries"
    assert message.message_id == "cron:retries:3600000001"
    assert json.loads(message.body) == {
        "job": "retries",
        "period": 3_600_000_001,
        "period_s": 0.5,
        "due_at": "2027-01-15T08:00:00.500000+00:00",
    }
    assert Tick.from_json(message.body) == Tick("retries", 3_600_000_001, 0.5)


async def test_a_published_tick_reaches_a_bound_queue_and_an_unbound_one_is_let_go() -> None:
    transport = InProcessTransport("cron-test")
    await transport.connect()
    try:
        publish = publish_tick(transport)
        await publish(Tick("stuck", 7, 10.0))  # nothing bound yet: not an error
        await transport.declare_queue("watch", ["cron.*"])
        await publish(Tick("stuck", 8, 10.0))
        assert await transport.queue_depth("watch") == 1
    finally:
        await transport.close()


async def test_a_tick_the_broker_cannot_take_is_let_go_with_one_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A broker outage loses a period's tick (the next one follows): no traceback per tick."""
    transport = InProcessTransport("cron-test")  # never connected: every publish fails
    with caplog.at_level(logging.WARNING, logger="ops.services.cron_jobs"):
        await publish_tick(transport)(Tick("retries", 9, 1.0))
    [record] = caplog.records
    assert "cron.retries of period 9 not published" in record.getMessage()
    assert record.exc_info is None


async def test_two_scheduler_processes_run_each_job_once_per_period(
    database_url: str, db: Database, amqp_url: str, exchange_name: str, tmp_path: Path
) -> None:
    """Acceptance: two schedulers for ten periods → each job ran ten times, not twenty.

    Waits for ten periods of every job, not for ten periods of the clock: periods nobody was up
    for are not made up (ops/services/scheduler.py), so on a machine too busy to run either
    scheduler at a period's start a period may go by; none may run twice."""
    period = 0.5
    jobs = ("retries", "stuck", "terminations", "tickets")
    env = {
        "HOSTWRIGHT_DATABASE_URL": database_url,
        "HOSTWRIGHT_AMQP_URL": amqp_url,
        "HOSTWRIGHT_EXCHANGE": exchange_name,
        **{f"HOSTWRIGHT_CRON_{job.upper()}_S": str(period) for job in jobs},
    }
    seen: list[str] = []
    claims = ClaimStore(db)

    def periods_ran(job: str) -> set[int]:
        return {int(mid.rpartition(":")[2]) for mid in seen if mid.startswith(f"cron:{job}:")}

    def claimed() -> int:
        return sum(len(claims.claims(job)) for job in jobs)

    async def record(delivery: Delivery) -> None:
        seen.append(delivery.message.message_id)
        await delivery.ack()

    watcher = AmqpTransport(amqp_url, exchange_name)
    await watcher.connect()
    try:
        await watcher.declare_queue("watch", ["cron.*"])
        await watcher.consume("watch", record, prefetch=100)
        schedulers = [
            HostwrightProcess(["serve", "scheduler"], env, tmp_path, f"scheduler-{n}").start()
            for n in (1, 2)
        ]
        try:
            await asyncio.to_thread(
                wait_for,
                lambda: all(len(periods_ran(job)) >= 10 for job in jobs),
                period * 11 + 30,
                "ten periods of every job",
            )
            for process in schedulers:
                assert process.proc is not None and process.proc.poll() is None, process.log()
        finally:
            codes = [process.terminate() for process in schedulers]
        assert codes == [0, 0], [p.log() for p in schedulers]
        # every claimed period's tick was confirmed before its scheduler stopped: wait for
        # all of them, so a second tick of some period would be among them
        await asyncio.to_thread(wait_for, lambda: len(seen) >= claimed(), 10, "every tick")
    finally:
        for queue in ("watch", *QUEUES):
            await watcher.delete_queue(queue)
            await watcher.delete_queue(f"{queue}.dead")
        await watcher.delete_exchange()
        await watcher.close()

    assert [mid for mid, count in Counter(seen).items() if count > 1] == []
    claimants = {by for job in jobs for _, by in ClaimStore(db).claims(job)}
    assert len(claimants) == 2, claimants  # both schedulers won periods: both really competed
