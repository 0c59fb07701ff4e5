"""The messages between the pipeline and the role handlers (not events: transport only).

  pipeline → handler   routing key ``task.<role>.<server_id>``, message_id ``<task_id>:<attempt>``
  handler → pipeline   ``result.<role>`` (one per attempt) and ``heartbeat.<role>`` (while running)

Each is JSON; ``from_json`` raises ValueError on anything malformed, so a consumer can
dead-letter it instead of looping.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, fields
from typing import Any

OUTCOMES = ("succeeded", "failed_retryable", "failed_permanent")


@dataclass(frozen=True)
class TaskMessage:
    task_id: str
    attempt: int
    service_id: str
    step: str
    role: str
    action: str
    server_id: str
    params: dict[str, Any]
    inputs: dict[str, Any] = field(default_factory=dict)  # outputs of the steps it depends on
    # the command that started the task's run: the handler's log lines carry it
    command_id: str | None = None

    @property
    def routing_key(self) -> str:
        return f"task.{self.role}.{self.server_id}"

    @property
    def message_id(self) -> str:
        return f"{self.task_id}:{self.attempt}"

    def to_json(self) -> bytes:
        return _encoded(self)

    @classmethod
    def from_json(cls, body: bytes) -> TaskMessage:
        return cls(**_object(body, cls))


@dataclass(frozen=True)
class ResultMessage:
    task_id: str
    attempt: int
    role: str
    outcome: str  # one of OUTCOMES
    error: str = ""
    changed: bool = False
    log: list[str] = field(default_factory=list)
    outputs: dict[str, Any] = field(default_factory=dict)

    @property
    def routing_key(self) -> str:
        return f"result.{self.role}"

    @property
    def message_id(self) -> str:
        return f"result:{self.task_id}:{self.attempt}"

    def to_json(self) -> bytes:
        return _encoded(self)

    @classmethod
    def from_json(cls, body: bytes) -> ResultMessage:
        message = cls(**_object(body, cls))
        if message.outcome not in OUTCOMES:
            raise ValueError(f"unknown outcome {message.outcome!r}")
        return message


@dataclass(frozen=True)
class HeartbeatMessage:
    task_id: str
    attempt: int
    role: str
    sequence: int

    @property
    def routing_key(self) -> str:
        return f"heartbeat.{self.role}"

    @property
    def message_id(self) -> str:
        return f"heartbeat:{self.task_id}:{self.attempt}:{self.sequence}"

    def to_json(self) -> bytes:
        return _encoded(self)

    @classmethod
    def from_json(cls, body: bytes) -> HeartbeatMessage:
        return cls(**_object(body, cls))


def _encoded(message: Any) -> bytes:
    """A message's fields as one JSON object. Field by field, not ``dataclasses.asdict``, which
    deep-copies every nested dict and list first: the pipeline encodes a message per attempt."""
    values = {f.name: getattr(message, f.name) for f in fields(message)}
    return json.dumps(values, separators=(",", ":")).encode()


def _object(body: bytes, cls: type) -> dict[str, Any]:
    try:
        value = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"not JSON: {exc}") from exc
    if not isinstance(value, dict):
        raise ValueError(f"{cls.__name__} must be a JSON object")
    # A field this release does not know is left out, not refused: a message a newer pipeline
    # or handler sent during a rolling upgrade (or before a rollback) is still handled, instead
    # of dead-lettered until its step fails for good. A missing field is still an error.
    names = {f.name for f in fields(cls)}
    return {name: item for name, item in value.items() if name in names}
