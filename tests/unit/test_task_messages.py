"""Task, result and heartbeat messages read tolerantly: a field this release does not know (a
newer pipeline's or handler's, during a rolling upgrade) is left out; a missing one is an
error the consumer dead-letters."""

from __future__ import annotations

import json

import pytest

from handlers.messages import HeartbeatMessage, TaskMessage

TASK = {
    "task_id": "t-1",
    "attempt": 1,
    "service_id": "42",
    "step": "web.user",
    "role": "web",
    "action": "apply",
    "server_id": "web1",
    "params": {"username": "shop"},
}


def test_a_field_this_release_does_not_know_is_left_out() -> None:
    body = json.dumps({**TASK, "from_a_later_release": {"x": 1}}).encode()
    message = TaskMessage.from_json(body)
    assert (message.task_id, message.server_id, message.params) == ("t-1", "web1", TASK["params"])
    assert "from_a_later_release" not in json.loads(message.to_json())


def test_a_missing_field_is_still_refused() -> None:
    body = json.dumps({k: v for k, v in TASK.items() if k != "server_id"}).encode()
    with pytest.raises((ValueError, TypeError)):
        TaskMessage.from_json(body)


def test_a_heartbeat_with_an_unknown_field_reads() -> None:
    beat = HeartbeatMessage(task_id="t-1", attempt=2, role="web", sequence=7)
    body = json.dumps({**json.loads(beat.to_json()), "sent_at": "later"}).encode()
    assert HeartbeatMessage.from_json(body) == beat
