"""Two attempts of one step never run at once on a node, with every part a real process on
RabbitMQ and PostgreSQL (tests/support/deployment.py).

A web handler process is stopped (SIGSTOP) in the middle of a slow apply: it sends no more
heartbeats, its lease lapses, and the pipeline dispatches attempt 2 to a second web handler
process, while the first attempt's command is still running on the node. The second attempt
waits for the step fence the stopped process still holds; once the first is continued
(SIGCONT) and ends, the second runs, finds the site made and succeeds. The node's command record
shows no two commands at once and the site made once.
"""

from __future__ import annotations

import itertools
import signal
from datetime import datetime
from pathlib import Path
from typing import Any

from ops.devtools.simnode import Faults, read_command_log, read_stats
from tests.support.convergence import settle
from tests.support.deployment import Deployment, dumps, wait_until
from tests.support.resilience import (
    SPLIT_NODES,
    TaskRecord,
    assert_no_double_apply,
    deployment,
    order_split,
    task_history,
)

SETTINGS = {
    "HOSTWRIGHT_LEASE_S": "3",
    "HOSTWRIGHT_HEARTBEAT_S": "0.5",
    # the second handler process may take a while to start on a busy machine: the task must
    # not be force-failed as stuck before attempt 2 is taken up
    "HOSTWRIGHT_STUCK_AFTER_S": "120",
}
APPLY_MS = 6000  # longer than the lease plus the retry's back-off, shorter than the timeout


def web_commands(system: Deployment) -> list[dict[str, Any]]:
    return sorted(read_command_log(system.nodes["web1"].data_dir), key=lambda e: e["started"])


def overlaps(entries: list[dict[str, Any]]) -> list[tuple[list[str], list[str]]]:
    """Pairs of commands where the later began before the earlier ended."""
    found = []
    for before, after in itertools.pairwise(entries):
        if datetime.fromisoformat(after["started"]) < datetime.fromisoformat(before["finished"]):
            found.append((before["argv"], after["argv"]))
    return found


async def web_domain_task(system: Deployment) -> TaskRecord:
    [record] = [r for r in (await task_history(system)).values() if r.step == "web.domain"]
    return record


async def test_a_stopped_handler_whose_lease_lapsed_never_overlaps_the_next_attempt(
    tmp_path: Path, amqp_url: str, exchange_name: str, fresh_postgres_url: str
) -> None:
    async with deployment(
        tmp_path, amqp_url, exchange_name, fresh_postgres_url, SPLIT_NODES, settings=SETTINGS
    ) as system:
        # The first web handler takes one message at a time: attempt 2 cannot be handed to it
        # while it is stopped holding attempt 1, so the second handler process gets it.
        system.processes["handler web"].terminate()
        first = system.start("handler web", HOSTWRIGHT_PREFETCH="1")
        web = system.nodes["web1"]
        web.set_faults(Faults(slow_commands={"v-add-web-domain": APPLY_MS}))
        await order_split(system, 71)

        async def applying() -> bool:
            log = read_command_log(web.data_dir)
            probed = any(e["argv"][0].startswith("v-list-web-domain") for e in log)
            return probed and int(read_stats(web.data_dir).get("running", 0)) > 0

        await wait_until(applying, 60, "the web domain's apply running on web1", system.logs)
        assert first.proc is not None
        first.proc.send_signal(signal.SIGSTOP)
        try:
            second = system.start_extra("handler web")

            async def second_attempt() -> bool:
                return len((await web_domain_task(system)).of("Dispatched")) >= 2

            await wait_until(second_attempt, 60, "attempt 2 of web.domain", system.logs)

            async def apply_ended() -> bool:
                log = read_command_log(web.data_dir)
                return any(e["argv"][0] == "v-add-web-domain" for e in log)

            await wait_until(apply_ended, 30, "the first attempt's apply ending", system.logs)
        finally:
            first.proc.send_signal(signal.SIGCONT)

        await system.wait_status([71], "active", 60)
        await settle(system)
        entries = web_commands(system)
        assert not overlaps(entries), dumps(overlaps(entries))
        assert_no_double_apply(system)
        task = await web_domain_task(system)
        [succeeded] = task.of("Succeeded")
        assert succeeded.attempt >= 2, task.kinds
        assert any("another attempt is running" in line for line in succeeded.log), succeeded.log
        assert second.proc is not None and second.proc.poll() is None
