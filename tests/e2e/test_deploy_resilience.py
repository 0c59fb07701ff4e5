"""Deploys that survive crashes, outages and limits, end to end on RabbitMQ and PostgreSQL:
every hostwright part a real process, every node a real SSH server (tests/support/deployment.py).

- SIGKILL of a web handler while a step's apply is running on the node, and separately of the
  pipeline mid-run: every service still ends ``active``, and no state-changing command hit the
  same thing twice (from each node's command record).
- A node that refuses connections for a while: its task's attempts are spaced as the retry
  policy says (from the recorded Task events), and it finishes once the node is back.
- A node gone for good: exactly max-attempts attempts, the task in ``error``, the service
  ``deploy_failed``; a service on the other mail node still ends ``active``.
- Per-server limit 2 with three web handler processes: the web node never ran more than two
  commands at once, and did run two.
- Permanent failures (exit 2, 8, 10, a domain owned by another user) are tried once and show a
  readable error, on the task's own page too.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from ops.devtools.simnode import Faults, read_command_log, read_stats
from tests.support.convergence import settle
from tests.support.deployment import (
    DNS1_IP,
    MAIL2_IP,
    MAIL_IP,
    WEB_IP,
    Deployment,
    dumps,
    wait_until,
)
from tests.support.resilience import (
    SPLIT_NODES,
    NodeSpec,
    TaskRecord,
    assert_no_double_apply,
    deployment,
    order_split,
    seconds,
    service_ids_placing,
    task_history,
    tasks_of,
)

JITTER = 0.2  # RetryPolicy's default; not a setting
TICK_SLACK_S = 3.0  # a due retry goes out on the pipeline's next tick (0.2 s) + store writes


def web_running(system: Deployment) -> int:
    return int(read_stats(system.nodes["web1"].data_dir).get("running", 0))


def only_succeeded_once(history: dict[Any, TaskRecord]) -> None:
    """No task recorded two successes (a stale or duplicate result is ignored)."""
    for record in history.values():
        assert len(record.of("Succeeded")) <= 1, (record.step, record.kinds)


# --- 1. SIGKILL of a handler mid-step ------------------------------------------------------


async def test_sigkill_of_a_web_handler_mid_apply_ends_active_with_no_apply_twice(
    tmp_path: Path, amqp_url: str, exchange_name: str, fresh_postgres_url: str
) -> None:
    async with deployment(
        tmp_path, amqp_url, exchange_name, fresh_postgres_url, SPLIT_NODES
    ) as system:
        system.nodes["web1"].set_faults(Faults(latency_ms=800))
        services = [11, 12, 13]
        for service_id in services:
            await order_split(system, service_id)

        # A user probe answered "absent" and a command is running: that is the v-add-user
        # the probe called for, 800 ms long — the handler dies in the middle of the apply.
        def mid_apply() -> bool:
            log = read_command_log(system.nodes["web1"].data_dir)
            absent = any(e["argv"][0] == "v-list-user" and e["exit_code"] == 3 for e in log)
            return absent and web_running(system) > 0

        async def ready() -> bool:
            return mid_apply()

        await wait_until(ready, 45, "a v-add-user running on web1", system.logs)
        before_kill = len(read_command_log(system.nodes["web1"].data_dir))
        system.processes["handler web"].kill()
        assert web_running(system) > 0, "the kill came after the command, not during it"
        system.start("handler web")

        await system.wait_status(services, "active", 60)
        await settle(system)
        after = read_command_log(system.nodes["web1"].data_dir)[before_kill:]
        assert after, "nothing ran on web1 after the kill: the step was never taken up again"
        assert_no_double_apply(system)
        only_succeeded_once(await task_history(system))


# --- 2. SIGKILL of the pipeline mid-run ----------------------------------------------------


async def test_sigkill_of_the_pipeline_mid_run_ends_active_with_no_apply_twice(
    tmp_path: Path, amqp_url: str, exchange_name: str, fresh_postgres_url: str
) -> None:
    async with deployment(
        tmp_path, amqp_url, exchange_name, fresh_postgres_url, SPLIT_NODES
    ) as system:
        system.nodes["web1"].set_faults(Faults(latency_ms=300))
        services = [21, 22, 23, 24]
        for service_id in services:
            await order_split(system, service_id)

        async def mid_run() -> bool:
            history = await task_history(system)
            dispatched = sum(len(r.of("Dispatched")) for r in history.values())
            return dispatched >= 8

        await wait_until(mid_run, 30, "eight dispatched attempts", system.logs)
        history = await task_history(system)
        open_tasks = [r for r in history.values() if r.kinds[-1] in ("Planned", "Dispatched")]
        assert open_tasks, "every task was done before the kill: the test proved nothing"
        system.processes["pipeline"].kill()
        statuses = [(await system.status(i))["status"] for i in services]
        assert statuses != ["active"] * len(services)
        system.start("pipeline")

        await system.wait_status(services, "active", 60)
        await settle(system)
        assert_no_double_apply(system)
        history = await task_history(system)
        only_succeeded_once(history)
        assert all(r.kinds[-1] == "Succeeded" for r in history.values()), dumps(
            {r.step: r.kinds for r in history.values() if r.kinds[-1] != "Succeeded"}
        )


async def test_a_second_pipeline_stands_by_and_takes_over_when_the_leader_is_killed(
    tmp_path: Path, amqp_url: str, exchange_name: str, fresh_postgres_url: str
) -> None:
    async with deployment(
        tmp_path, amqp_url, exchange_name, fresh_postgres_url, SPLIT_NODES
    ) as system:
        leader = system.processes["pipeline"]
        await wait_until(
            _says(leader.log, "pipeline: leading"), 30, "the first pipeline leading", system.logs
        )
        standby = system.start("pipeline")
        await wait_until(
            _says(standby.log, "standing by"), 30, "the second pipeline standing by", system.logs
        )
        system.nodes["web1"].set_faults(Faults(latency_ms=300))
        services = [31, 32, 33, 34]
        for service_id in services:
            await order_split(system, service_id)

        async def mid_run() -> bool:
            history = await task_history(system)
            return sum(len(r.of("Dispatched")) for r in history.values()) >= 8

        await wait_until(mid_run, 30, "eight dispatched attempts", system.logs)
        assert "leading" not in standby.log() and "rebuilt" not in standby.log()
        leader.kill()
        await wait_until(
            _says(standby.log, "pipeline: leading"), 30, "the standby taking over", system.logs
        )
        await system.wait_status(services, "active", 60)
        await settle(system)
        assert_no_double_apply(system)
        history = await task_history(system)
        only_succeeded_once(history)
        assert all(r.kinds[-1] == "Succeeded" for r in history.values())


def _says(log: Callable[[], str], text: str) -> Callable[[], Awaitable[bool]]:
    async def said() -> bool:
        return text in log()

    return said


# --- 3. a node that refuses connections for a while ---------------------------------------


async def test_a_refusing_node_is_retried_with_growing_delays_and_finishes_when_back(
    tmp_path: Path, amqp_url: str, exchange_name: str, fresh_postgres_url: str
) -> None:
    initial, cap, max_attempts, failures = 0.5, 2.0, 7, 4
    settings = {
        "HOSTWRIGHT_RETRY_MAX_ATTEMPTS": str(max_attempts),
        "HOSTWRIGHT_RETRY_INITIAL_BACKOFF_S": str(initial),
        "HOSTWRIGHT_RETRY_MAX_BACKOFF_S": str(cap),
    }
    async with deployment(
        tmp_path, amqp_url, exchange_name, fresh_postgres_url, SPLIT_NODES, settings=settings
    ) as system:
        mail = system.nodes["mail1"]
        mail.set_faults(Faults(refuse=True))
        await mail.apply_faults()
        await order_split(system, 31)

        async def mail_failed_enough() -> bool:
            history = await task_history(system)
            return any(
                r.server_id == "mail1" and len(r.of("Failed")) >= failures for r in history.values()
            )

        await wait_until(mail_failed_enough, 30, f"{failures} failed mail attempts", system.logs)
        mail.set_faults(Faults())
        await mail.apply_faults()
        await system.wait_status([31], "active", 60)

        history = await task_history(system)
        retried = [r for r in history.values() if r.server_id == "mail1" and r.of("Failed")]
        assert len(retried) == 1, dumps([(r.step, r.kinds) for r in retried])
        task = retried[0]
        failed, scheduled = task.of("Failed"), task.of("RetryScheduled")
        dispatched, succeeded = task.of("Dispatched"), task.of("Succeeded")
        assert failures <= len(failed) < max_attempts, task.kinds
        assert [f.attempt for f in failed] == list(range(1, len(failed) + 1))
        assert all(f.retryable and "mail1" in f.error for f in failed), [f.error for f in failed]
        assert len(scheduled) == len(failed) and len(succeeded) == 1, task.kinds
        assert [d.attempt for d in dispatched] == list(range(1, len(failed) + 2))
        assert succeeded[0].attempt == len(failed) + 1

        bases = []
        for n, (fail, retry) in enumerate(zip(failed, scheduled, strict=True), start=1):
            base = min(cap, initial * 2 ** (n - 1))
            bases.append(base)
            delay = seconds(retry.due_at, fail.timestamp)
            assert base * (1 - JITTER) - 0.01 <= delay <= base * (1 + JITTER) + 0.01, (
                f"retry {n}: waited {delay:.3f}s, the policy says {base}s ±{JITTER:.0%}"
            )
            # the next attempt starts when due, not before, and not long after
            started = seconds(dispatched[n].timestamp, retry.due_at)
            assert 0 <= started <= TICK_SLACK_S, f"attempt {n + 1} started {started:.3f}s off"
        assert bases[:4] == [0.5, 1.0, 2.0, 2.0], bases  # doubling, then capped
        delays = [seconds(r.due_at, f.timestamp) for f, r in zip(failed, scheduled, strict=True)]
        assert delays[0] < delays[1] < delays[2], f"retry delays do not grow: {delays}"
        # while it refused, the node saw nothing; once back it ran the whole mail chain
        assert any(e["changed"] for e in read_command_log(mail.data_dir))


# --- 4. a node gone for good ----------------------------------------------------------------


async def test_a_node_gone_for_good_errors_after_max_attempts_while_other_nodes_finish(
    tmp_path: Path, amqp_url: str, exchange_name: str, fresh_postgres_url: str
) -> None:
    max_attempts = 3
    nodes: list[NodeSpec] = [
        ("web1", ("web",), WEB_IP),
        ("mail1", ("mail",), MAIL_IP),
        ("mail2", ("mail",), MAIL2_IP),
        ("dns1", ("dns",), DNS1_IP),
    ]
    settings = {
        "HOSTWRIGHT_RETRY_MAX_ATTEMPTS": str(max_attempts),
        "HOSTWRIGHT_RETRY_INITIAL_BACKOFF_S": "0.3",
        "HOSTWRIGHT_RETRY_MAX_BACKOFF_S": "1",
    }
    (doomed,) = service_ids_placing(nodes, "split", "mail_server", "mail1", 41, 1)
    (fine,) = service_ids_placing(nodes, "split", "mail_server", "mail2", 41, 1)
    async with deployment(
        tmp_path, amqp_url, exchange_name, fresh_postgres_url, nodes, settings=settings
    ) as system:
        gone = system.nodes["mail1"]
        gone.set_faults(Faults(refuse=True))
        await gone.apply_faults()
        await order_split(system, doomed)
        await order_split(system, fine)

        await system.wait_status([doomed], "deploy_failed", 60)
        await system.wait_status([fine], "active", 60)

        history = await task_history(system)
        on_gone = [r for r in history.values() if r.server_id == "mail1"]
        assert {r.service_id for r in on_gone} == {str(doomed)}
        tried = [r for r in on_gone if r.of("Dispatched")]
        assert len(tried) == 1, dumps([(r.step, r.kinds) for r in on_gone])
        task = tried[0]
        assert [d.attempt for d in task.of("Dispatched")] == list(range(1, max_attempts + 1))
        assert len(task.of("Failed")) == max_attempts
        assert len(task.of("RetryScheduled")) == max_attempts - 1
        assert task.kinds[-1] == "Errored", task.kinds
        error = task.of("Errored")[0].error
        assert f"gave up after {max_attempts} attempts" in error and "mail1" in error, error
        # the mail steps after it never started
        assert all(not r.of("Dispatched") for r in on_gone if r is not task)
        assert read_command_log(gone.data_dir) == []
        # the service on mail2 touched nothing of mail1 and finished
        assert all(
            r.kinds[-1] == "Succeeded" for r in history.values() if r.service_id == str(fine)
        )

        async def shown_in_error() -> bool:
            reply = await system.staff.get(f"/v1/tasks/{task.task_id}")
            return reply.status_code == 200 and reply.json()["state"] == "error"

        await wait_until(shown_in_error, 10, "the task view showing error")
        shown = (await system.staff.get(f"/v1/tasks/{task.task_id}")).json()
        assert shown["attempts"] == max_attempts and "gave up" in shown["error"], shown
        # no attempt after the last: still exactly N once everything else is done
        history = await task_history(system)
        assert len(history[task.task_id].of("Dispatched")) == max_attempts


# --- 5. per-server limit 2 with three handler processes -----------------------------------


async def test_per_server_limit_two_holds_across_three_web_handler_processes(
    tmp_path: Path, amqp_url: str, exchange_name: str, fresh_postgres_url: str
) -> None:
    async with deployment(
        tmp_path, amqp_url, exchange_name, fresh_postgres_url, SPLIT_NODES, max_concurrency=2
    ) as system:
        system.start_extra("handler web")
        system.start_extra("handler web")
        system.nodes["web1"].set_faults(Faults(latency_ms=250))
        services = list(range(51, 57))
        for service_id in services:
            await order_split(system, service_id)

        await system.wait_status(services, "active", 90)
        await settle(system)
        stats = read_stats(system.nodes["web1"].data_dir)
        assert stats["peak_running"] <= 2, stats
        assert stats["peak_running"] == 2, f"no two commands ever ran at once: {stats}"
        # three web handlers were up all along (none died and left the work to the others)
        web_handlers = [system.processes["handler web"], *system.extra]
        assert len(web_handlers) == 3
        assert all(p.proc is not None and p.proc.poll() is None for p in web_handlers)
        assert_no_double_apply(system)


# --- 6. permanent failures ---------------------------------------------------------------


async def one_attempt_error(
    system: Deployment, service_id: int, action: str, *needles: str
) -> dict[str, Any]:
    """The service is deploy_failed; its ``action`` task is in error after one attempt, with an
    error naming each of ``needles``, on ``GET /v1/tasks/{id}`` too (log included)."""
    await system.wait_status([service_id], "deploy_failed", 45)
    history = await task_history(system)
    (record,) = [
        r for r in history.values() if r.service_id == str(service_id) and r.action == action
    ]
    assert len(record.of("Dispatched")) == 1, record.kinds
    assert record.kinds[-1] == "Errored" and not record.of("RetryScheduled"), record.kinds
    (failed,) = record.of("Failed")
    assert not failed.retryable, failed.error
    error = record.of("Errored")[0].error
    for needle in needles:
        assert needle in error, f"{needle!r} not in {error!r}"

    async def shown() -> bool:
        reply = await system.staff.get(f"/v1/tasks/{record.task_id}")
        return reply.status_code == 200 and reply.json()["state"] == "error"

    await wait_until(shown, 10, f"task {record.task_id} shown in error")
    page: dict[str, Any] = (await system.staff.get(f"/v1/tasks/{record.task_id}")).json()
    assert page["attempts"] == 1, page
    for needle in needles:
        assert needle in page["error"], page
    assert any(needle in line for line in page["log"] for needle in needles[:1]), page["log"]
    timeline = (await system.client.get(f"/v1/services/{service_id}/timeline")).json()["steps"]
    (step,) = [s for s in timeline if s["task_id"] == str(record.task_id)]
    assert step["state"] == "error" and step["attempts"] == 1, step
    return page


async def test_permanent_failures_are_tried_once_and_show_a_readable_error(
    tmp_path: Path, amqp_url: str, exchange_name: str, fresh_postgres_url: str
) -> None:
    async with deployment(
        tmp_path, amqp_url, exchange_name, fresh_postgres_url, SPLIT_NODES
    ) as system:
        web = system.nodes["web1"]
        codes = {61: (2, "invalid"), 62: (8, "limit"), 63: (10, "forbidden")}
        for service_id, (code, name) in codes.items():
            web.set_faults(Faults(fail_commands={"v-add-web-domain": code}))
            await order_split(system, service_id)
            await one_attempt_error(
                system,
                service_id,
                "ensure_web_domain",
                f"exited {code} ({name})",
                f"site{service_id}.example.com",
                "web1",
            )
        web.set_faults(Faults())

        # a domain another user holds on the web node, made by hand as staff would
        await system.on_node("web1", "v-add-user", "otherowner", "Other-pass-1", "o@example.net")
        await system.on_node("web1", "v-add-web-domain", "otherowner", "taken.example.com")
        await system.order(
            64,
            "split",
            "taken.example.com",
            username="takeruser",
            plan={"package": "pkg64", "disk_mb": 1000},
        )
        await one_attempt_error(
            system,
            64,
            "ensure_web_domain",
            "conflict: taken.example.com is owned by otherowner on web1",
        )
        # the other owner's domain is untouched
        assert "taken.example.com" in await system.on_node(
            "web1", "v-list-web-domains", "otherowner"
        )
        await settle(system)
        for service_id in (*codes, 64):
            tasks = await tasks_of(system, service_id)
            web_domain = [t for t in tasks if t["action"] == "ensure_web_domain"]
            assert [t["attempts"] for t in web_domain] == [1], web_domain
