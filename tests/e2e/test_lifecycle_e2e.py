"""Suspend, unsuspend, terminate and force terminate end to end: real hostwright processes on
RabbitMQ and PostgreSQL (the scheduler among them), simulated Hestia nodes over SSH.

- suspend → every user of the service is suspended on every node it touches and a client
  write answers 409; unsuspend → all back; terminate → nothing of the service is left on any
  node; each command sent twice is harmless (split and vanity, side by side);
- terminate with a DNS node refusing connections stays ``terminating``; once the node is back
  the scheduler finishes it, no human involved; force terminate with the node gone ends
  ``terminated`` with the leftovers listed;
- change password → the new password on every node of the service (split: its user on each
  node; vanity: its own user and mailbox), one command per retried call, told in the oplog;
- a handler frozen with SIGSTOP mid-step: its task shows stuck once the lease runs out,
  ``force_fail_stuck`` puts it in error, and after SIGCONT its late result records nothing.
"""

from __future__ import annotations

import asyncio
import json
import signal
import uuid
from pathlib import Path
from typing import Any

from domain.hestia_package import content_package, is_content_package
from ops.devtools.simnode import Faults, read_command_log, read_state_json, read_stats
from ops.devtools.simnode.v_users import password_matches
from tests.support.budget import budget
from tests.support.deployment import (
    PROVIDER_DNS_USER,
    PROVIDER_DOMAIN,
    PROVIDER_MAIL_USER,
    Deployment,
    wait_until,
)
from tests.support.resilience import (
    SPLIT_NODES,
    deployment,
    order_split,
    task_history,
    tasks_of,
)

ORDERED_PLAN = {"package": "pkg1", "disk_mb": 1000}  # what order_split(system, 1) orders


async def act(system: Deployment, service_id: int, action: str, **body: Any) -> int:
    reply = await system.client.post(f"/v1/services/{service_id}/{action}", json=body)
    assert reply.status_code in (202, 409), reply.text
    return reply.status_code


async def user_state(system: Deployment, server_id: str, user: str) -> str | None:
    """ "yes"/"no" for SUSPENDED, or None when the user does not exist on the node."""
    from handlers.hestia_driver import HestiaDriver

    driver = HestiaDriver(system.access(server_id))
    try:
        found = await driver.probe_json(["v-list-user", user])
    finally:
        await driver.close()
    return None if found is None else str(found[user]["SUSPENDED"])


async def service_events(system: Deployment, service_id: int) -> list[str]:
    reply = await system.client.get(f"/v1/services/{service_id}/events")
    assert reply.status_code == 200, reply.text
    return [e["topic"] for e in reply.json()["events"]]


async def vanity_mailbox(system: Deployment) -> dict[str, Any]:
    boxes: dict[str, Any] = await system.on_node(
        "mail1", "v-list-mail-accounts", PROVIDER_MAIL_USER, PROVIDER_DOMAIN
    )
    return boxes


async def provider_records(system: Deployment, dns: str) -> dict[str, dict[str, str]]:
    records: dict[str, dict[str, str]] = await system.on_node(
        dns, "v-list-dns-records", PROVIDER_DNS_USER, PROVIDER_DOMAIN
    )
    return records


async def test_suspend_unsuspend_and_terminate_reach_every_node_and_repeats_are_harmless(
    tmp_path: Path, amqp_url: str, exchange_name: str, fresh_postgres_url: str
) -> None:
    async with deployment(
        tmp_path,
        amqp_url,
        exchange_name,
        fresh_postgres_url,
        SPLIT_NODES,
        provider=("mail1", ["dns1", "dns2"]),
    ) as system:
        await order_split(system, 1)
        await system.order(
            2, "vanity", f"blog.{PROVIDER_DOMAIN}", label="blog", username="bloguser"
        )
        await system.wait_status([1, 2], "active", 120)
        nodes = ("web1", "mail1", "dns1", "dns2")

        # suspend, twice
        for service_id in (1, 2):
            assert await act(system, service_id, "suspend", reason="unpaid") == 202
            assert await act(system, service_id, "suspend", reason="unpaid") == 202
        await system.wait_status([1, 2], "suspended", 60)
        for service_id in (1, 2):  # the suspend's run is over, all its tasks done
            shown = await system.status(service_id)
            assert shown["operation"] is None, shown
            assert shown["progress"]["done"] == shown["progress"]["total"] > 0, shown
        assert (await system.status(2))["roles"] == {
            "web": {"servers": ["web1"], "username": "bloguser"},
            "mail": {"servers": ["mail1"], "username": None},  # the provider's shared user
            "dns": {"servers": ["dns1", "dns2"], "username": None},
        }
        assert [await user_state(system, n, "user1") for n in nodes] == ["yes"] * 4
        assert await user_state(system, "web1", "bloguser") == "yes"
        assert (await vanity_mailbox(system))["blog"]["SUSPENDED"] == "yes"
        for dns in ("dns1", "dns2"):
            records = await provider_records(system, dns)
            states = {r["RECORD"]: r["SUSPENDED"] for r in records.values()}
            assert states.pop("blog") == "yes"
            assert set(states.values()) == {"no"}, f"provider records suspended on {dns}"
        # the provider's own users stay as they were
        assert await user_state(system, "mail1", PROVIDER_MAIL_USER) == "no"
        assert await user_state(system, "dns1", PROVIDER_DNS_USER) == "no"
        assert (await service_events(system, 1)).count("Service.SuspendRequested") == 1

        # a client write while suspended: 409, nothing recorded
        before = await service_events(system, 1)
        for action in ("redeploy", "factory-reset", "verify-repair"):
            assert await act(system, 1, action) == 409
        assert await service_events(system, 1) == before

        # unsuspend, twice
        for service_id in (1, 2):
            assert await act(system, service_id, "unsuspend") == 202
            assert await act(system, service_id, "unsuspend") == 202
        await system.wait_status([1, 2], "active", 60)
        assert [await user_state(system, n, "user1") for n in nodes] == ["no"] * 4
        assert await user_state(system, "web1", "bloguser") == "no"
        assert (await vanity_mailbox(system))["blog"]["SUSPENDED"] == "no"

        # change plan, twice: the new package (and its quotas) on every node of the service
        bigger = {"plan": {"package": "pkg1big", "disk_mb": 5000}}
        assert await act(system, 1, "change-plan", **bigger) == 202
        assert await act(system, 1, "change-plan", **bigger) == 202

        async def plan_applied() -> bool:
            return "Service.PlanApplied" in await service_events(system, 1)

        await wait_until(plan_applied, 60, "the plan change on the nodes", system.logs)
        # … a package named after those limits; the one it left, no user's any more, is gone
        big, small = content_package(bigger["plan"]), content_package(ORDERED_PLAN)
        for node in nodes:
            user = (await system.on_node(node, "v-list-user", "user1"))["user1"]
            package = await system.on_node(node, "v-list-user-package", big)
            assert user["PACKAGE"] == big, node
            assert package[big]["DISK_QUOTA"] == "5000", node
            assert small not in await system.on_node(node, "v-list-user-packages"), node
        assert (await service_events(system, 1)).count("Service.PlanChangeRequested") == 1
        assert (await system.status(1))["status"] == "active"

        # terminate, twice
        for service_id in (1, 2):
            assert await act(system, service_id, "terminate") == 202
            assert await act(system, service_id, "terminate") == 202
        await system.wait_status([1, 2], "terminated", 90)
        assert [await user_state(system, n, "user1") for n in nodes] == [None] * 4
        assert await user_state(system, "web1", "bloguser") is None
        # and no package hostwright made is left where no user uses it
        for node in nodes:
            left = await system.on_node(node, "v-list-user-packages")
            assert not [p for p in left if is_content_package(p)], (node, left)
        assert "blog" not in await vanity_mailbox(system)
        for dns in ("dns1", "dns2"):
            names = {r["RECORD"] for r in (await provider_records(system, dns)).values()}
            assert "blog" not in names
            assert await user_state(system, dns, PROVIDER_DNS_USER) == "no"
        # its history stays for audit
        assert "Service.Ordered" in await service_events(system, 1)
        assert (await service_events(system, 1)).count("Service.TerminateRequested") == 1


async def test_terminate_waits_for_a_refusing_node_and_force_lists_what_was_left(
    tmp_path: Path, amqp_url: str, exchange_name: str, fresh_postgres_url: str
) -> None:
    settings = {
        "HOSTWRIGHT_RETRY_MAX_ATTEMPTS": "2",
        "HOSTWRIGHT_RETRY_INITIAL_BACKOFF_S": "0.3",
        "HOSTWRIGHT_RETRY_MAX_BACKOFF_S": "0.5",
        "HOSTWRIGHT_COMMAND_TIMEOUT_S": "3",
    }
    async with deployment(
        tmp_path, amqp_url, exchange_name, fresh_postgres_url, SPLIT_NODES, settings=settings
    ) as system:
        await order_split(system, 3)
        await order_split(system, 4)
        await system.wait_status([3, 4], "active", 120)
        dns2 = system.nodes["dns2"]
        dns2.set_faults(Faults(refuse=True))
        await dns2.apply_faults()

        assert await act(system, 3, "terminate") == 202

        async def dns2_step_retried_by_the_scheduler() -> bool:
            # max attempts is 2: a third attempt means it was in error and the scheduler's
            # "terminations" job tried it again, with nobody asking
            tasks = await tasks_of(system, 3)
            return any(t["server_id"] == "dns2" and t["attempts"] >= 3 for t in tasks)

        await wait_until(dns2_step_retried_by_the_scheduler, 60, "a scheduler retry", system.logs)
        assert (await system.status(3))["status"] == "terminating"
        assert await user_state(system, "web1", "user3") is None  # the other nodes are done

        dns2.set_faults(Faults())
        await dns2.apply_faults()
        await system.wait_status([3], "terminated", 60)  # the scheduler retried it
        assert await user_state(system, "dns2", "user3") is None

        # dns2 gone for good: force terminate closes the service and names what is left
        dns2.set_faults(Faults(refuse=True))
        await dns2.apply_faults()
        assert await act(system, 4, "terminate", force=True) == 202
        await system.wait_status([4], "terminated", 90)
        leftovers = (await system.status(4))["leftovers"]
        assert leftovers and {item["server_id"] for item in leftovers} == {"dns2"}
        assert all(item["step"] and item["error"] for item in leftovers)
        for node in ("web1", "mail1", "dns1"):
            assert await user_state(system, node, "user4") is None
        # the node still holds it, as the list says
        dns2.set_faults(Faults())
        await dns2.apply_faults()
        assert await user_state(system, "dns2", "user4") == "no"


async def test_a_frozen_handler_shows_stuck_can_be_force_failed_and_its_late_result_is_ignored(
    tmp_path: Path, amqp_url: str, exchange_name: str, fresh_postgres_url: str
) -> None:
    settings = {
        "HOSTWRIGHT_LEASE_S": "2",
        "HOSTWRIGHT_HEARTBEAT_S": "0.5",
        "HOSTWRIGHT_RETRY_MAX_ATTEMPTS": "20",
        "HOSTWRIGHT_RETRY_INITIAL_BACKOFF_S": "0.5",
        "HOSTWRIGHT_RETRY_MAX_BACKOFF_S": "1",
    }
    async with deployment(
        tmp_path, amqp_url, exchange_name, fresh_postgres_url, SPLIT_NODES, settings=settings
    ) as system:
        web = system.nodes["web1"]
        web.set_faults(Faults(latency_ms=4000))
        await order_split(system, 5)
        handler = system.processes["handler web"]

        async def web_command_running() -> bool:
            return int(read_stats(web.data_dir).get("running", 0)) > 0

        await wait_until(web_command_running, 60, "a web command in flight")
        handler.proc.send_signal(signal.SIGSTOP)
        try:

            async def stuck() -> list[dict[str, Any]]:
                reply = await system.staff.get(
                    "/v1/tasks", params={"service_id": "5", "stuck": "true"}
                )
                assert reply.status_code == 200, reply.text
                rows: list[dict[str, Any]] = reply.json()["tasks"]
                return rows

            async def shows_stuck() -> bool:
                return bool(await stuck())

            await wait_until(shows_stuck, 30, "the frozen handler's task to show stuck")
            (row,) = await stuck()
            assert row["server_id"] == "web1" and row["stuck_since"]
            reply = await system.staff.post(
                "/v1/tasks/bulk", json={"action": "force_fail_stuck", "older_than_s": 0}
            )
            assert reply.status_code == 202, reply.text
            assert row["task_id"] in reply.json()["task_ids"]
        finally:
            handler.proc.send_signal(signal.SIGCONT)
        await system.wait_status([5], "deploy_failed", 30)
        forced = uuid.UUID(row["task_id"])
        web.set_faults(Faults())

        # after SIGCONT the handler finishes what it held and reports; nothing is recorded
        async def handler_reported() -> bool:
            return int(read_stats(web.data_dir).get("running", 0)) == 0

        await wait_until(handler_reported, 30, "the thawed handler to finish its command")
        # its result, and any redelivered attempt, reach the pipeline: a quiet window, scaled
        # so that a slow machine cannot make the check below pass for want of time
        await asyncio.sleep(budget(3))
        events = (await task_history(system))[forced].kinds
        assert "Succeeded" not in events, events
        after_force = events[events.index("Errored") + 1 :]
        assert "Failed" not in after_force and "Succeeded" not in after_force, events


def holds_password(system: Deployment, server_id: str, password: str) -> dict[str, bool]:
    """Which users (``user``) and mailboxes (``user/domain/account``) of a node hold
    ``password``, read from the node's stored state (it keeps only a salted hash)."""
    state = json.loads(read_state_json(system.nodes[server_id].data_dir))
    found: dict[str, bool] = {}
    for name, user in state["users"].items():
        found[name] = password_matches(str(user["conf"].get("MD5", "")), password)
        for domain, mail in user["mail"].items():
            for account, conf in mail["accounts"].items():
                stored = str(conf.get("MD5", ""))
                found[f"{name}/{domain}/{account}"] = password_matches(stored, password)
    return found


async def test_change_password_reaches_every_node_once_per_retried_call(
    tmp_path: Path, amqp_url: str, exchange_name: str, fresh_postgres_url: str
) -> None:
    """WHMCS's ChangePassword: the new password on the service's user on every node (split),
    on a vanity service's own web user and mailbox (never the provider's shared user); a
    call retried with the same Idempotency-Key records one command; the oplog says so in
    words; the clear password is in no process's log, no node's journal, no read."""
    new = "Brand new p@ss 'w0rd'"
    async with deployment(
        tmp_path,
        amqp_url,
        exchange_name,
        fresh_postgres_url,
        SPLIT_NODES,
        provider=("mail1", ["dns1", "dns2"]),
    ) as system:
        await order_split(system, 1, password="First-passw0rd")
        await system.order(
            2, "vanity", f"blog.{PROVIDER_DOMAIN}", label="blog", username="bloguser"
        )
        await system.wait_status([1, 2], "active", 120)
        nodes = ("web1", "mail1", "dns1", "dns2")
        assert [holds_password(system, n, "First-passw0rd")["user1"] for n in nodes] == [True] * 4
        provider_before = holds_password(system, "mail1", new)[PROVIDER_MAIL_USER]

        for service_id in (1, 2):
            for _ in range(2):  # WHMCS retrying the same call
                reply = await system.client.post(
                    f"/v1/services/{service_id}/change-password",
                    json={"password": new},
                    headers={"Idempotency-Key": f"whmcs-pw-{service_id}"},
                )
                assert (reply.status_code, reply.json()) == (202, {"result": "success"})

        async def changed() -> bool:
            events = [await service_events(system, i) for i in (1, 2)]
            return all("Service.PasswordChanged" in e for e in events)

        await wait_until(changed, 60, "the password change on the nodes", system.logs)
        for node in nodes:
            assert holds_password(system, node, new)["user1"], node
            assert not holds_password(system, node, "First-passw0rd")["user1"], node
        assert holds_password(system, "web1", new)["bloguser"]
        mailbox = f"{PROVIDER_MAIL_USER}/{PROVIDER_DOMAIN}/blog"
        assert holds_password(system, "mail1", new)[mailbox]
        assert holds_password(system, "mail1", new)[PROVIDER_MAIL_USER] == provider_before
        for service_id in (1, 2):
            events = await service_events(system, service_id)
            assert events.count("Service.PasswordChangeRequested") == 1, events
            shown = await system.status(service_id)
            assert (shown["status"], shown["operation"]) == ("active", None), shown
            oplog = await system.client.get("/v1/oplog", params={"service_id": str(service_id)})
            assert oplog.status_code == 200, oplog.text
            actions = [entry["action"] for entry in oplog.json()["entries"]]
            assert actions.count("change-password") == 1, actions
            assert actions[-1] == "password-changed", actions
            assert new not in oplog.text
            reply = await system.client.get(f"/v1/services/{service_id}/events")
            assert new not in reply.text
        for part, process in system.processes.items():
            assert new not in process.log(), part
        for node in nodes:
            assert new not in json.dumps(read_command_log(system.nodes[node].data_dir)), node
