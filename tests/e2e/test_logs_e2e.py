"""The logs of a whole deploy, every part a real process on RabbitMQ and PostgreSQL, with
HOSTWRIGHT_LOG_FORMAT=json: every line of every process is one JSON object; no line holds an
order's password, a token, the secret key or the WHMCS secret — also when steps fail (the
failing command carries the password); one order's command id is on the gateway's line for
it, the pipeline's lines for its run and the web handler's lines for its steps; a failure that
is retried and one that is not are each a line naming service, task, server and reason."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from ops.devtools.simnode import Faults
from tests.support.deployment import DNS1_IP, DNS2_IP, MAIL_IP, WEB_IP, Deployment, wait_until

PASSWORDS = {1: "0rder-One-Pa55word!", 2: "0rder-Two-Pa55word!"}
WHMCS_SECRET = "whmcs-secret-that-no-log-may-hold-0123456789"
COMMAND = "whmcs-order-1-e2e"


@pytest.fixture
async def deployment(
    tmp_path: Path, amqp_url: str, exchange_name: str, fresh_postgres_url: str
) -> AsyncIterator[Deployment]:
    system = Deployment(tmp_path, amqp_url, exchange_name, fresh_postgres_url)
    system.settings.update(
        {
            "HOSTWRIGHT_LOG_FORMAT": "json",
            # every part knows the WHMCS secret (tickets stay off: no WHMCS is called)
            "HOSTWRIGHT_WHMCS_URL": "http://127.0.0.1:9",
            "HOSTWRIGHT_WHMCS_IDENTIFIER": "hostwright-e2e",
            "HOSTWRIGHT_WHMCS_SECRET": WHMCS_SECRET,
        }
    )
    try:
        await system.add_node("web1", ("web",), WEB_IP)
        await system.add_node("mail1", ("mail",), MAIL_IP)
        await system.add_node("dns1", ("dns",), DNS1_IP)
        await system.add_node("dns2", ("dns",), DNS2_IP)
        await system.start_all()
        await system.register_nodes()
        yield system
    finally:
        await system.close()


def json_lines(system: Deployment, part: str) -> list[dict[str, Any]]:
    """The part's log, each line parsed (a line that is not one JSON object fails the test)."""
    parsed = []
    for number, line in enumerate(system.processes[part].log().splitlines(), 1):
        try:
            value = json.loads(line)
        except json.JSONDecodeError:
            raise AssertionError(f"{part} line {number} is not JSON: {line!r}") from None
        assert isinstance(value, dict), (part, number, line)
        parsed.append(value)
    return parsed


def of_command(system: Deployment, part: str) -> list[dict[str, Any]]:
    return [line for line in json_lines(system, part) if line.get("command_id") == COMMAND]


async def test_a_deploy_s_logs_are_json_hold_no_secret_and_follow_one_command(
    deployment: Deployment,
) -> None:
    system = deployment
    web = system.nodes["web1"]
    # service 2's user can never be added (exit 2: invalid): its step fails for good
    web.set_faults(Faults(fail_commands={"v-add-user": 2}))
    await system.order(2, "split", "two.example.com", username="usertwo", password=PASSWORDS[2])
    await system.wait_status([2], "deploy_failed", 60)
    # service 1: the next two commands on web1 fail in a way that passes; retried, it deploys
    web.set_faults(Faults(fail_next=2))
    await system.order(
        1, "split", "one.example.com", username="userone", password=PASSWORDS[1], command_id=COMMAND
    )
    await system.wait_status([1], "active", 90)

    async def followed() -> bool:
        pipeline = of_command(system, "pipeline")
        return any(line.get("outcome") == "succeeded" for line in pipeline)

    await wait_until(followed, 30, "the pipeline's line for the end of the run", system.logs)
    # each part stops as an operator stops it, so its last lines are checked too
    await asyncio.gather(*(asyncio.to_thread(p.terminate) for p in system.processes.values()))

    secrets = [
        *PASSWORDS.values(),
        system.token,
        system.staff_token,
        system.settings["HOSTWRIGHT_SECRET_KEY"],
        WHMCS_SECRET,
    ]
    for part, process in system.processes.items():
        text = process.log()
        assert text, f"{part} logged nothing"
        for secret in secrets:
            assert secret not in text, f"{part}'s log holds a secret"
        json_lines(system, part)  # every line one JSON object

    (order_line,) = [line for line in of_command(system, "gateway") if line.get("method") == "POST"]
    assert (order_line["path"], order_line["status"]) == ("/v1/services", 202)
    assert order_line["credential"] and isinstance(order_line["duration_ms"], float)
    assert {"time", "level", "logger", "message"} <= set(order_line)
    planned = [line for line in of_command(system, "pipeline") if "planned" in line["message"]]
    assert [line["service"] for line in planned] == ["1"]
    steps = [line for line in of_command(system, "handler web") if line.get("step")]
    assert {line["outcome"] for line in steps} >= {"failed_retryable", "succeeded"}
    assert all(line["service"] == "1" and line["server"] == "web1" for line in steps)

    failures = [line for line in json_lines(system, "pipeline") if line.get("next")]
    retried = [line for line in failures if line["service"] == "1"]
    ended = [line for line in failures if line["service"] == "2"]
    assert retried and {line["next"] for line in retried} == {"retry"}
    assert all(line["command_id"] == COMMAND for line in retried)
    assert [line["next"] for line in ended] == ["error"]
    # service 2 was ordered with no command id: the gateway gave it one, which its lines carry
    (generated,) = [
        line["command_id"]
        for line in json_lines(system, "gateway")
        if line.get("path") == "/v1/services" and line["command_id"] != COMMAND
    ]
    assert [line["command_id"] for line in ended] == [generated]
    for line in (*retried, *ended):
        assert line["task"] and line["server"] == "web1" and line["reason"]
