"""The pipeline's decisions, on a real event store (SQLite) with a fixed plan and fake
publisher/limits: dependencies, per-server limits, retries on the policy's schedule,
superseded attempts, outcomes, and a rebuild after a crash."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from domain.commands import parse_lifecycle
from domain.deploy_plan import StepSpec
from domain.retry_policy import RetryPolicy
from domain.service import Service, service_uuid
from handlers.messages import HeartbeatMessage, ResultMessage, TaskMessage
from handlers.pipeline import Pipeline, PipelineSettings, RelayedEvent
from ops.adapters.pipeline_store import StorePipelineAdapter
from ops.store.event_store import EventStore
from tests.fakes.clock import Clock
from tests.fakes.publisher import RecordingPublisher
from tests.support.store_orders import order_in_store

T0 = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)

STEPS = [
    StepSpec("web.user", "web", "ensure_user", "web1", {"user": "u1"}, ()),
    StepSpec("web.domain", "web", "ensure_web_domain", "web1", {"user": "u1"}, ("web.user",)),
    StepSpec("mail.domain", "mail", "ensure_mail_domain", "mail1", {}, ()),
    StepSpec("mail.dkim", "mail", "ensure_dkim", "mail1", {}, ("mail.domain",)),
    StepSpec("dns.records@dns1", "dns", "ensure_dns_records", "dns1", {}, ("mail.dkim",)),
    StepSpec("dns.records@dns2", "dns", "ensure_dns_records", "dns2", {}, ("mail.dkim",)),
]


class FixedPlanner:
    def place(self, service: Service) -> dict[str, object]:
        return {"web_server": "web1", "mail_server": "mail1", "dns_servers": ["dns1", "dns2"]}

    def steps(self, service: Service, placement: dict[str, object], kind: str) -> list[StepSpec]:
        assert placement == self.place(service)
        return list(STEPS)


class Limits:
    def __init__(self, limit: int = 4) -> None:
        self.limit = limit

    def max_concurrency(self, server_id: str) -> int:
        return self.limit


POLICY = RetryPolicy(max_attempts=3, initial_backoff_s=10, max_backoff_s=60, jitter=0.2)


@pytest.fixture
def store(tmp_path: Path) -> EventStore:
    return EventStore(f"sqlite:///{tmp_path / 'store.sqlite'}")


def build(
    store: EventStore,
    clock: Clock,
    published: RecordingPublisher,
    limit: int = 4,
    adapter: StorePipelineAdapter | None = None,
) -> Pipeline:
    return Pipeline(
        adapter or StorePipelineAdapter(store),
        FixedPlanner(),
        Limits(limit),
        published,
        settings=PipelineSettings(policy=POLICY, lease_s=30, batch_size=100),
        clock=clock,
        unit_random=lambda: 0.5,
    )


def order(store: EventStore, service_id: str = "7") -> None:
    order_in_store(store, service_id, now=T0)


async def ordered(store: EventStore) -> tuple[Clock, RecordingPublisher, Pipeline]:
    """A pipeline that has just taken the order of service 7 (its first steps published)."""
    clock, published = Clock(T0), RecordingPublisher()
    pipeline = build(store, clock, published)
    order(store)
    await pipeline.on_event("Service.Ordered", service_uuid("7"), version=1)
    return clock, published, pipeline


def ok(message: TaskMessage, **outputs: str) -> ResultMessage:
    return ResultMessage(
        task_id=message.task_id,
        attempt=message.attempt,
        role=message.role,
        outcome="succeeded",
        changed=True,
        log=["done"],
        outputs=outputs,
    )


def failed(message: TaskMessage, outcome: str = "failed_retryable") -> ResultMessage:
    return ResultMessage(
        task_id=message.task_id,
        attempt=message.attempt,
        role=message.role,
        outcome=outcome,
        error="exit 15: connect",
        log=["boom"],
    )


async def run_to_the_end(pipeline: Pipeline, published: RecordingPublisher) -> None:
    while published.messages:
        for message in published.take():
            outputs = {"dkim_txt": "v=DKIM1; p=abc"} if message.step == "mail.dkim" else {}
            await pipeline.on_result(ok(message, **outputs))


async def test_an_order_runs_its_steps_in_dependency_order_and_ends_active(
    store: EventStore,
) -> None:
    _clock, published, pipeline = await ordered(store)
    assert sorted(published.steps()) == ["mail.domain", "web.user"]
    first = published.take()
    for message in first:
        await pipeline.on_result(ok(message))
    assert sorted(published.steps()) == ["mail.dkim", "web.domain"]
    dkim = next(m for m in published.messages if m.step == "mail.dkim")
    await pipeline.on_result(ok(dkim, dkim_txt="v=DKIM1; p=abc"))
    records = [m for m in published.messages if m.step.startswith("dns.records")]
    assert {m.server_id for m in records} == {"dns1", "dns2"}
    assert all(m.inputs == {"mail.dkim": {"dkim_txt": "v=DKIM1; p=abc"}} for m in records)
    published.messages = [m for m in published.messages if m.step != "mail.dkim"]
    await run_to_the_end(pipeline, published)
    service = store.get_service("7")
    assert service.status == "active"
    assert service.placement == FixedPlanner().place(service)


async def test_the_same_order_event_delivered_twice_plans_once(store: EventStore) -> None:
    clock, _published, pipeline = await ordered(store)
    await pipeline.on_event("Service.Ordered", service_uuid("7"), version=1)
    restarted = build(store, clock, RecordingPublisher())
    await restarted.rebuild()
    await restarted.on_event("Service.Ordered", service_uuid("7"), version=1)
    planned = [
        e for e in StorePipelineAdapter(store).task_history() if type(e).__name__ == "Planned"
    ]
    assert len(planned) == len(STEPS)


async def test_every_input_delivered_twice_changes_nothing_the_second_time(
    store: EventStore,
) -> None:
    """The consumer asks its inbox only about redeliveries the broker flags, so a duplicate it
    does not flag (a relay or a handler publishing again after a crash) reaches the pipeline:
    a run start, a result and a heartbeat twice, the duplicates in later batches."""
    clock, published = Clock(T0), RecordingPublisher()
    pipeline = build(store, clock, published)
    order(store)
    start = RelayedEvent("Service.Ordered", service_uuid("7"), 1)
    await pipeline.on_batch([start])
    await pipeline.on_batch([start])
    sent: list[TaskMessage] = []
    while published.messages:
        batch = published.take()
        sent += batch
        results = [
            ok(m, **({"dkim_txt": "v=DKIM1; p=abc"} if m.step == "mail.dkim" else {}))
            for m in batch
        ]
        beats = [HeartbeatMessage(m.task_id, m.attempt, m.role, 1) for m in batch]
        await pipeline.on_batch([*beats, *results])
        await pipeline.on_batch([*results, *beats])
    assert sorted(m.step for m in sent) == sorted(s.step for s in STEPS)  # each once
    history = list(StorePipelineAdapter(store).task_history())
    succeeded = [e for e in history if type(e).__name__ == "Succeeded"]
    assert len(succeeded) == len(STEPS)
    service = store.get_service("7")
    assert service.status == "active"
    topics = [e["topic"] for e in store.events_of("7")]
    assert topics.count("Service.Activated") == 1


async def test_no_server_gets_more_attempts_than_its_limit(store: EventStore) -> None:
    clock, published = Clock(T0), RecordingPublisher()
    pipeline = build(store, clock, published, limit=1)
    for sid in ("1", "2", "3"):
        order(store, sid)
        await pipeline.on_event("Service.Ordered", service_uuid(sid), version=1)
    servers = [m.server_id for m in published.messages]
    assert sorted(servers) == ["mail1", "web1"]  # one each, the rest wait
    await pipeline.on_result(ok(published.messages[0]))
    assert pipeline.in_flight("web1") <= 1 and pipeline.in_flight("mail1") <= 1


async def test_retries_follow_the_policy_then_the_service_fails(store: EventStore) -> None:
    clock, published, pipeline = await ordered(store)
    web = next(m for m in published.take() if m.step == "web.user")
    expected_delays = [10, 20]
    for attempt, delay in enumerate(expected_delays, start=1):
        assert web.attempt == attempt
        await pipeline.on_result(failed(web))
        published.take()
        clock.now += timedelta(seconds=delay - 1)
        await pipeline.tick()
        assert "web.user" not in published.steps(), "retried before its back-off"
        clock.now += timedelta(seconds=1)
        await pipeline.tick()
        web = next(m for m in published.take() if m.step == "web.user")
    await pipeline.on_result(failed(web))
    service = store.get_service("7")
    assert service.status == "deploy_failed"


async def test_a_permanent_failure_is_not_retried(store: EventStore) -> None:
    clock, published, pipeline = await ordered(store)
    web = next(m for m in published.take() if m.step == "web.user")
    await pipeline.on_result(failed(web, "failed_permanent"))
    clock.now += timedelta(hours=1)
    await pipeline.tick()
    assert "web.user" not in published.steps()
    assert store.get_service("7").status == "deploy_failed"


async def test_a_silent_handler_loses_its_lease_and_its_late_result_is_ignored(
    store: EventStore,
) -> None:
    clock, published, pipeline = await ordered(store)
    web = next(m for m in published.take() if m.step == "web.user")
    clock.now += timedelta(seconds=20)
    await pipeline.on_heartbeat(HeartbeatMessage(web.task_id, web.attempt, "web", 1))
    clock.now += timedelta(seconds=20)
    await pipeline.tick()
    assert "web.user" not in published.steps(), "the heartbeat should have renewed the lease"
    clock.now += timedelta(seconds=11)
    await pipeline.tick()  # lease ran out: attempt 1 failed, retry in 10 s
    clock.now += timedelta(seconds=10)
    await pipeline.tick()
    retry = next(m for m in published.take() if m.step == "web.user")
    assert retry.attempt == 2
    await pipeline.on_result(ok(web))  # attempt 1 reports late
    assert "web.domain" not in published.steps()
    await pipeline.on_result(ok(retry))
    assert "web.domain" in published.steps()


async def test_a_restarted_pipeline_continues_from_the_store(store: EventStore) -> None:
    clock, published, _pipeline = await ordered(store)
    in_flight = published.take()
    # crash: a new pipeline knows only the store
    published_again = RecordingPublisher()
    restarted = build(store, clock, published_again)
    await restarted.rebuild()
    # no new attempt: the same attempts' messages again, in case they never went out (a
    # handler's inbox absorbs a copy)
    sent_again = sorted((m.task_id, m.attempt) for m in published_again.take())
    assert sent_again == sorted((m.task_id, m.attempt) for m in in_flight)
    for message in in_flight:
        await restarted.on_result(ok(message))
    await run_to_the_end(restarted, published_again)
    assert store.get_service("7").status == "active"


async def test_a_redeploy_starts_a_new_run_that_supersedes_the_open_one(
    store: EventStore,
) -> None:
    _clock, published, pipeline = await ordered(store)
    old = published.take()
    store.request(parse_lifecycle("redeploy", "7", {}, now=T0, actor="whmcs"))
    await pipeline.on_event("Service.RedeployRequested", service_uuid("7"), version=2)
    assert published.messages == []  # waits for the old attempts to come off the nodes
    for message in old:
        await pipeline.on_result(ok(message))  # results of the superseded run change nothing
    fresh = published.take()
    assert {m.step for m in fresh} == {"web.user", "mail.domain"}
    assert all(m.task_id not in {o.task_id for o in old} for m in fresh)
    for message in fresh:
        await pipeline.on_result(ok(message))
    await run_to_the_end(pipeline, published)
    assert store.get_service("7").status == "active"


async def test_try_again_on_a_failed_task_brings_the_service_back_to_active(
    store: EventStore,
) -> None:
    clock, published, pipeline = await ordered(store)
    first = published.take()
    web = next(m for m in first if m.step == "web.user")
    await pipeline.on_result(failed(web, "failed_permanent"))
    published.messages.extend(m for m in first if m is not web)  # the mail chain goes on
    assert store.get_service("7").status == "deploy_failed"
    # staff press "Try again" on the task: the gateway records Task.Retried, the relay brings it
    adapter = StorePipelineAdapter(store)
    task = adapter.task(uuid.UUID(web.task_id))
    assert task.retry(clock.now, actor="admin")
    adapter.save(task)
    await pipeline.on_event("Task.Retried", task.id, version=task.version)
    retried = next(m for m in published.messages if m.step == "web.user")
    assert retried.attempt == 2
    await run_to_the_end(pipeline, published)
    assert store.get_service("7").status == "active"


async def test_a_new_run_waits_until_the_superseded_runs_attempts_are_off_the_nodes(
    store: EventStore,
) -> None:
    clock, published, pipeline = await ordered(store)
    old = published.take()  # web.user and mail.domain are running on their nodes
    store.request(parse_lifecycle("redeploy", "7", {}, now=T0, actor="whmcs"))
    await pipeline.on_event("Service.RedeployRequested", service_uuid("7"), version=2)
    assert published.messages == [], "the new run must not overlap the old one's attempts"
    assert pipeline.in_flight("web1") == 1  # the old attempt still counts against the limit
    await pipeline.on_result(ok(old[0]))  # ignored as a result, but it is off the node now
    assert published.messages == []
    clock.now += timedelta(seconds=31)  # the other old attempt's lease runs out
    await pipeline.tick()
    assert {m.step for m in published.take()} == {"web.user", "mail.domain"}


class CountingStore(StorePipelineAdapter):
    def __init__(self, store: EventStore) -> None:
        super().__init__(store)
        self.saves: list[int] = []

    def save(self, *aggregates: object) -> None:
        self.saves.append(len(aggregates))
        super().save(*aggregates)


async def test_a_batch_of_results_is_one_transaction_and_a_conflict_loses_none(
    store: EventStore,
) -> None:
    """Results arriving together are recorded in one save (then one save dispatches what they
    unblocked); when staff changed one of the tasks first, the batch falls back to one save per
    result and every other result is still recorded."""
    clock, published = Clock(T0), RecordingPublisher()
    counting = CountingStore(store)
    pipeline = build(store, clock, published, adapter=counting)
    for service_id in ("1", "2", "3"):
        order(store, service_id)
        await pipeline.on_event("Service.Ordered", service_uuid(service_id), version=1)
    first = published.take()
    assert len(first) == 6  # web.user and mail.domain of each service
    counting.saves.clear()
    await pipeline.on_batch([ok(message) for message in first])
    assert counting.saves == [6, 6]  # six results in one save; six dispatches in the next
    second = published.take()

    # Staff cancels one of the dispatched tasks behind the pipeline's back.
    victim = second[0]
    cancelled = store.app.repository.get(uuid.UUID(victim.task_id))
    cancelled.cancel(clock(), actor="staff")
    store.save(cancelled)
    counting.saves.clear()
    results = [ok(m, dkim_txt="v=DKIM1; p=abc") for m in second]
    await pipeline.on_batch(results)
    assert counting.saves[0] == 6  # the batch save, refused as a whole
    for message in second:
        task = store.app.repository.get(uuid.UUID(message.task_id))
        expected = "cancelled" if message is victim else "succeeded"
        assert task.state == expected, message.step


async def active_service(
    store: EventStore, pipeline: Pipeline, published: RecordingPublisher
) -> None:
    order(store)
    await pipeline.on_event("Service.Ordered", service_uuid("7"), version=1)
    await run_to_the_end(pipeline, published)
    assert store.get_service("7").status == "active"


async def terminate(store: EventStore, pipeline: Pipeline, force: bool) -> None:
    command = parse_lifecycle("terminate", "7", {"force": force}, now=T0, actor="whmcs")
    store.request(command)
    service = store.get_service("7")
    await pipeline.on_event("Service.TerminateRequested", service.id, version=service.version)


async def fail_until_error(
    pipeline: Pipeline, published: RecordingPublisher, clock: Clock, step: str
) -> None:
    """Fails every attempt of ``step`` (node unreachable) until the policy gives up; every
    other step succeeds."""
    while True:
        for message in published.take():
            if message.step == step:
                await pipeline.on_result(failed(message))
            else:
                await pipeline.on_result(ok(message))
        clock.now += timedelta(seconds=70)
        await pipeline.tick()
        if not published.messages:
            return


async def test_a_terminate_that_cannot_reach_a_node_waits_and_the_scheduler_finishes_it(
    store: EventStore,
) -> None:
    from handlers.pipeline import CronTick

    clock, published = Clock(T0), RecordingPublisher()
    pipeline = build(store, clock, published)
    await active_service(store, pipeline, published)
    await terminate(store, pipeline, force=False)
    assert {m.step for m in published.messages} == {s.step for s in STEPS if not s.depends_on}
    await fail_until_error(pipeline, published, clock, "web.user")
    assert store.get_service("7").status == "terminating"
    # The scheduler's nudge: the step that failed because the node was away is tried again.
    await pipeline.on_batch([CronTick("terminations")])
    (again,) = published.take()
    assert again.step == "web.user"
    await pipeline.on_result(ok(again))
    await run_to_the_end(pipeline, published)
    service = store.get_service("7")
    assert service.status == "terminated"


async def test_a_forced_terminate_closes_the_service_and_lists_what_was_left(
    store: EventStore,
) -> None:
    clock, published = Clock(T0), RecordingPublisher()
    pipeline = build(store, clock, published)
    await active_service(store, pipeline, published)
    await terminate(store, pipeline, force=True)
    await fail_until_error(pipeline, published, clock, "web.user")
    service = store.get_service("7")
    assert service.status == "terminated"
    events = store.events_of("7", None)
    (terminated,) = [e for e in events if e["topic"] == "Service.Terminated"]
    left = [(x["server_id"], x["step"]) for x in terminated["data"]["leftovers"]]
    assert left == [("web1", "web.user"), ("web1", "web.domain")]


class FlakyStore(StorePipelineAdapter):
    """Fails the next ``failures`` saves as a dropped database connection would."""

    def __init__(self, store: EventStore) -> None:
        super().__init__(store)
        self.failures = 0

    def save(self, *aggregates: object) -> None:
        if self.failures:
            self.failures -= 1
            for aggregate in aggregates:
                aggregate.collect_events()  # type: ignore[attr-defined]  # as a failed save does
            raise RuntimeError("connection lost")
        super().save(*aggregates)


async def test_a_save_that_fails_for_another_reason_makes_the_pipeline_reread_the_store(
    store: EventStore,
) -> None:
    """The failed batch's results are applied again one by one (the consumer's fallback):
    they must be recorded, not taken as already known from memory that the store never got."""
    clock, published = Clock(T0), RecordingPublisher()
    flaky = FlakyStore(store)
    pipeline = build(store, clock, published, adapter=flaky)
    order(store)
    await pipeline.on_event("Service.Ordered", service_uuid("7"), version=1)
    first = published.take()
    flaky.failures = 1
    with pytest.raises(RuntimeError):
        await pipeline.on_batch([ok(m) for m in first])
    for message in first:  # the consumer loop's one-by-one fallback
        await pipeline.on_result(ok(message))
    for message in first:
        assert store.app.repository.get(uuid.UUID(message.task_id)).state == "succeeded"
    await run_to_the_end(pipeline, published)
    assert store.get_service("7").status == "active"


async def request(store: EventStore, pipeline: Pipeline, action: str, **body: object) -> None:
    store.request(parse_lifecycle(action, "7", body, now=T0, actor="whmcs"))
    service = store.get_service("7")
    topic = {"suspend": "SuspendRequested", "change-plan": "PlanChangeRequested"}[action]
    await pipeline.on_event(f"Service.{topic}", service.id, version=service.version)


async def test_a_suspend_during_the_deploy_waits_for_it_and_then_runs(store: EventStore) -> None:
    _clock, published, pipeline = await ordered(store)
    await request(store, pipeline, "suspend")
    assert all(m.step in {s.step for s in STEPS} for m in published.messages)
    history = task_runs(store)
    assert list(history) == [1], "the suspend must not cut the deploy short"
    await run_to_the_end(pipeline, published)  # the deploy, then the suspend's run
    assert len(task_runs(store)) == 2
    assert store.get_service("7").status == "suspended"


async def test_a_forced_terminate_is_not_retried_by_the_scheduler_once_closed(
    store: EventStore,
) -> None:
    from handlers.pipeline import CronTick

    clock, published = Clock(T0), RecordingPublisher()
    pipeline = build(store, clock, published)
    await active_service(store, pipeline, published)
    await terminate(store, pipeline, force=True)
    await fail_until_error(pipeline, published, clock, "web.user")
    assert store.get_service("7").status == "terminated"
    await pipeline.on_batch([CronTick("terminations")])
    assert not published.messages  # the leftovers are listed, not tried forever


def task_runs(store: EventStore) -> dict[int, int]:
    """How many tasks each run of service 7 planned."""
    runs: dict[int, int] = {}
    for event in StorePipelineAdapter(store).task_history():
        if type(event).__name__ == "Planned" and event.service_id == "7":
            runs[event.run] = runs.get(event.run, 0) + 1
    return runs
