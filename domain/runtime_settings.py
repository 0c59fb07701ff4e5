"""The RuntimeSettings aggregate: the knobs admins turn while the system runs.

Retry policy, per-server concurrency, dispatch batch size, WHMCS tickets and task-queue
housekeeping. There is one such aggregate (``SETTINGS_ID``). Until the first change is
recorded the values are the defaults the process settings give; the first change records
``RuntimeSettings.Adopted`` (those defaults, the baseline) and then ``RuntimeSettings.Changed``
in one save; every later change records one ``Changed``. Every ``Changed`` carries the whole
new document, the names of the fields that changed and the actor, so a reader needs no history.

``PUT /v1/settings`` bodies go through ``parse_settings_update``. A body may be partial: the
fields it names replace the current values, the others keep theirs (``concurrency.per_server``
is one field: a map given replaces the whole map). The document ``GET`` shows can be sent back
as is, which changes nothing. Unknown keys, wrong types and values out of bounds are refused
with a message naming the field; the merged result is checked as a whole (``max_backoff_s``
at least ``initial_backoff_s``) before anything is recorded.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, NamedTuple

from eventsourcing.domain import Aggregate

from domain.errors import InvalidInput
from domain.retry_policy import RetryPolicy
from domain.server import MAX_CONCURRENCY, parse_server_id
from domain.ticket import PRIORITIES, TicketConfig

SETTINGS_ID = uuid.UUID("5b8e2f0a-6c1d-4e7a-9f3b-1d2c4a6e8b90")
MAX_ATTEMPTS = 100  # RetryPolicy's own bounds
MAX_BACKOFF_S = 86_400.0
MAX_BATCH_SIZE = 10_000
MAX_PER_SERVER = 1_000
MAX_STUCK_AFTER_S = 7 * 86_400.0
MAX_CLEAN_AFTER_S = 366 * 86_400.0
MAX_DEPARTMENT_ID = 2**31 - 1

Check = Callable[[object, str], Any]


@dataclass(frozen=True)
class RetrySettings:
    max_attempts: int
    initial_backoff_s: float
    max_backoff_s: float


@dataclass(frozen=True)
class ConcurrencySettings:
    default: int
    per_server: Mapping[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class QueueSettings:
    """Task-queue housekeeping ages (satisfies ``domain.task_bulk.QueueAges``)."""

    stuck_after_s: float = 120.0
    clean_completed_after_s: float = 7 * 86_400.0


@dataclass(frozen=True)
class RuntimeSettingsValues:
    """One complete, valid set of runtime settings. Build it with ``from_json`` (validates)."""

    retry: RetrySettings
    concurrency: ConcurrencySettings
    batch_size: int
    tickets: TicketConfig = field(default_factory=TicketConfig)
    queue: QueueSettings = field(default_factory=QueueSettings)

    def __post_init__(self) -> None:
        # each field is bounded by the schema; the one rule across fields lives here
        if self.retry.max_backoff_s < self.retry.initial_backoff_s:
            raise InvalidInput(
                f"retry.max_backoff_s ({self.retry.max_backoff_s:g}) must be at least "
                f"retry.initial_backoff_s ({self.retry.initial_backoff_s:g})"
            )

    @classmethod
    def from_json(cls, document: object) -> RuntimeSettingsValues:
        """A complete settings document → values, or InvalidInput naming the field."""
        return _build(_parse_document(document, complete=True))

    def as_json(self) -> dict[str, Any]:
        """The document ``GET /v1/settings`` shows and ``Changed`` records."""
        return _nest(self._flat())

    def policy(self) -> RetryPolicy:
        retry = self.retry
        return RetryPolicy(
            max_attempts=retry.max_attempts,
            initial_backoff_s=retry.initial_backoff_s,
            max_backoff_s=retry.max_backoff_s,
        )

    def max_concurrency(self, server_id: str, registered: int | None = None) -> int:
        """The server's override when one is set, else the limit it was registered with
        (when the caller passes it), else ``concurrency.default``."""
        override = self.concurrency.per_server.get(server_id)
        if override is not None:
            return override
        return registered if registered is not None else self.concurrency.default

    def merged(self, update: SettingsUpdate) -> RuntimeSettingsValues:
        """These values with the update's fields replaced; InvalidInput when the result is
        not valid."""
        return _build({**self._flat(), **update.fields})

    def differences(self, other: RuntimeSettingsValues) -> list[str]:
        """The dotted names of the fields whose values differ, in document order."""
        mine, theirs = self._flat(), other._flat()
        return [name for name in mine if mine[name] != theirs[name]]

    def _flat(self) -> dict[str, Any]:
        return {
            "retry.max_attempts": self.retry.max_attempts,
            "retry.initial_backoff_s": self.retry.initial_backoff_s,
            "retry.max_backoff_s": self.retry.max_backoff_s,
            "concurrency.default": self.concurrency.default,
            "concurrency.per_server": dict(self.concurrency.per_server),
            "batch_size": self.batch_size,
            "tickets.enabled": self.tickets.enabled,
            "tickets.department_id": self.tickets.department_id,
            "tickets.priority": self.tickets.priority,
            "queue.stuck_after_s": self.queue.stuck_after_s,
            "queue.clean_completed_after_s": self.queue.clean_completed_after_s,
        }


@dataclass(frozen=True)
class SettingsUpdate:
    """Validated fields to replace, keyed by dotted name (``retry.max_attempts``)."""

    fields: Mapping[str, Any]


class SettingsApplied(NamedTuple):
    """What a change left: the values now in force, and the dotted names it changed
    (empty when it changed nothing and so recorded nothing)."""

    values: RuntimeSettingsValues
    changed: list[str]


def parse_settings_update(body: object) -> SettingsUpdate:
    """Validates a ``PUT /v1/settings`` body (partial or complete), or raises InvalidInput."""
    return SettingsUpdate(_parse_document(body, complete=False))


class RuntimeSettings(Aggregate):
    class Adopted(Aggregate.Created):
        """The baseline the first change started from: the defaults of that moment."""

        values: dict[str, Any]
        actor: str

    def __init__(self, values: dict[str, Any], actor: str) -> None:
        self.values = RuntimeSettingsValues.from_json(values)

    class Changed(Aggregate.Event):
        """New values (the whole document), the dotted names that changed, who changed them."""

        values: dict[str, Any]
        changed: list[str]
        actor: str

        def apply(self, aggregate: Any) -> None:
            aggregate.values = RuntimeSettingsValues.from_json(self.values)

    @classmethod
    def adopt(cls, baseline: RuntimeSettingsValues, now: datetime, actor: str) -> RuntimeSettings:
        return cls._create(
            cls.Adopted, id=SETTINGS_ID, timestamp=now, values=baseline.as_json(), actor=actor
        )

    def change(self, update: SettingsUpdate, now: datetime, actor: str) -> list[str]:
        """Records Changed and returns the changed names; [] (nothing recorded) when the
        update changes nothing. InvalidInput when the merged values are not valid."""
        new = self.values.merged(update)
        changed = self.values.differences(new)
        if changed:
            self.trigger_event(
                RuntimeSettings.Changed,
                timestamp=now,
                values=new.as_json(),
                changed=changed,
                actor=actor,
            )
        return changed


def _whole(lower: int, upper: int) -> Check:
    def check(raw: object, name: str) -> int:
        if isinstance(raw, bool) or not isinstance(raw, int) or not lower <= raw <= upper:
            raise InvalidInput(f"{name} must be a whole number from {lower} to {upper}")
        return raw

    return check


def _seconds(upper: float) -> Check:
    def check(raw: object, name: str) -> float:
        if isinstance(raw, bool) or not isinstance(raw, int | float):
            raise InvalidInput(f"{name} must be a number of seconds")
        if not math.isfinite(raw) or not 0 < raw <= upper:
            raise InvalidInput(f"{name} must be above 0 and at most {upper:g} seconds")
        return float(raw)

    return check


def _flag(raw: object, name: str) -> bool:
    if not isinstance(raw, bool):
        raise InvalidInput(f"{name} must be true or false")
    return raw


def _priority(raw: object, name: str) -> str:
    if raw not in PRIORITIES:
        raise InvalidInput(f"{name} must be one of {', '.join(PRIORITIES)}")
    assert isinstance(raw, str)
    return raw


def _per_server(raw: object, name: str) -> dict[str, int]:
    if not isinstance(raw, dict):
        raise InvalidInput(f"{name} must be an object mapping server ids to limits")
    if len(raw) > MAX_PER_SERVER:
        raise InvalidInput(f"{name} may name at most {MAX_PER_SERVER} servers")
    limit = _whole(1, MAX_CONCURRENCY)
    limits: dict[str, int] = {}
    for server_id, value in raw.items():
        try:
            parsed_id = parse_server_id(server_id)
        except InvalidInput as exc:
            raise InvalidInput(f"{name}: {exc}") from None
        limits[parsed_id] = limit(value, f"{name}.{parsed_id}")
    return dict(sorted(limits.items()))


_SCHEMA: dict[str, dict[str, Check] | Check] = {
    "retry": {
        "max_attempts": _whole(1, MAX_ATTEMPTS),
        "initial_backoff_s": _seconds(MAX_BACKOFF_S),
        "max_backoff_s": _seconds(MAX_BACKOFF_S),
    },
    "concurrency": {"default": _whole(1, MAX_CONCURRENCY), "per_server": _per_server},
    "batch_size": _whole(1, MAX_BATCH_SIZE),
    "tickets": {
        "enabled": _flag,
        "department_id": _whole(1, MAX_DEPARTMENT_ID),
        "priority": _priority,
    },
    "queue": {
        "stuck_after_s": _seconds(MAX_STUCK_AFTER_S),
        "clean_completed_after_s": _seconds(MAX_CLEAN_AFTER_S),
    },
}


def _parse_document(body: object, *, complete: bool) -> dict[str, Any]:
    """A settings document → validated values keyed by dotted name; ``complete`` requires
    every field."""
    if not isinstance(body, dict):
        raise InvalidInput("the settings must be a JSON object")
    _refuse_unknown(body, _SCHEMA, "")
    flat: dict[str, Any] = {}
    for key, spec in _SCHEMA.items():
        if key not in body:
            if complete:
                raise InvalidInput(f"missing setting: {key}")
            continue
        raw = body[key]
        if not isinstance(spec, dict):
            flat[key] = spec(raw, key)
            continue
        if not isinstance(raw, dict):
            raise InvalidInput(f"{key} must be an object with {', '.join(spec)}")
        _refuse_unknown(raw, spec, f"{key}.")
        for name, check in spec.items():
            if name in raw:
                flat[f"{key}.{name}"] = check(raw[name], f"{key}.{name}")
            elif complete:
                raise InvalidInput(f"missing setting: {key}.{name}")
    return flat


def _refuse_unknown(given: dict[Any, Any], known: Mapping[str, object], prefix: str) -> None:
    unknown = sorted(f"{prefix}{name}" for name in map(str, given) if name not in known)
    if unknown:
        raise InvalidInput(
            f"unknown setting(s): {', '.join(unknown)}; "
            f"known here: {', '.join(prefix + name for name in known)}"
        )


def _nest(flat: Mapping[str, Any]) -> dict[str, Any]:
    document: dict[str, Any] = {}
    for name, value in flat.items():
        section, _, leaf = name.partition(".")
        if leaf:
            document.setdefault(section, {})[leaf] = value
        else:
            document[section] = value
    return document


def _build(flat: Mapping[str, Any]) -> RuntimeSettingsValues:
    return RuntimeSettingsValues(
        retry=RetrySettings(
            max_attempts=flat["retry.max_attempts"],
            initial_backoff_s=flat["retry.initial_backoff_s"],
            max_backoff_s=flat["retry.max_backoff_s"],
        ),
        concurrency=ConcurrencySettings(
            default=flat["concurrency.default"], per_server=dict(flat["concurrency.per_server"])
        ),
        batch_size=flat["batch_size"],
        tickets=TicketConfig(
            enabled=flat["tickets.enabled"],
            department_id=flat["tickets.department_id"],
            priority=flat["tickets.priority"],
        ),
        queue=QueueSettings(
            stuck_after_s=flat["queue.stuck_after_s"],
            clean_completed_after_s=flat["queue.clean_completed_after_s"],
        ),
    )
