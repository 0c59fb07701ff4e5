"""The RuntimeSettings aggregate: the knobs admins turn while the system runs.

Retry policy, per-server concurrency, dispatch batch size, WHMCS tickets, task-queue
housekeeping, the SSL cadence and the usage syncs' period and freshness. There is one such
aggregate (``SETTINGS_ID``). Until the first change is recorded the values are the defaults
the process settings give; the first
change records ``RuntimeSettings.Adopted`` (those defaults, the baseline) and then
``RuntimeSettings.Changed`` in one save; every later change records one ``Changed``. Every
``Changed`` carries the whole new document, the names of the fields that changed and the
actor, so a reader needs no history.

``PUT /v1/settings`` bodies go through ``parse_settings_update`` (the document's schema and
checks are in domain/settings_document.py). A body may be partial: the fields it names replace
the current values, the others keep theirs (``concurrency.per_server`` is one field: a map
given replaces the whole map). The document ``GET`` shows can be sent back
as is, which changes nothing. Unknown keys, wrong types and values out of bounds are refused
with a message naming the field; the merged result is checked as a whole (``max_backoff_s``
at least ``initial_backoff_s``, ``ssl.recheck_interval_s`` at least ``ssl.fast_interval_s``,
``usage.fresh_s`` at most ``usage.period_s``) before anything is recorded.

A section added later is added to the documents recorded before it by an upcast of
``Adopted`` and ``Changed`` (version 2: ``ssl``; version 3: ``usage``), with the defaults it
was introduced with (``SSL_DEFAULTS``, ``USAGE_DEFAULTS``: never the process settings, which
differ between processes and over time, while a replay must decide the same), so a store
whose settings were changed before still loads and replays. In such a store the process
settings of a later section (``HOSTWRIGHT_USAGE_PERIOD_S``/``FRESH_S``) never apply: its
values are those defaults until staff change them.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, NamedTuple

from eventsourcing.domain import Aggregate

from domain.errors import InvalidInput
from domain.retry_policy import RetryPolicy
from domain.settings_document import nest, parse_document
from domain.ssl_types import SslCadence
from domain.ticket import TicketConfig

SETTINGS_ID = uuid.UUID("5b8e2f0a-6c1d-4e7a-9f3b-1d2c4a6e8b90")
SSL_DEFAULTS = SslCadence()


@dataclass(frozen=True)
class UsageSettings:
    """How often each node's usage is listed (``period_s``), and how recent a listing a
    refresh joins rather than asking for another (``fresh_s``)."""

    period_s: int = 3600
    fresh_s: int = 60


USAGE_DEFAULTS = UsageSettings()


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
    ssl: SslCadence = SSL_DEFAULTS
    usage: UsageSettings = USAGE_DEFAULTS

    def __post_init__(self) -> None:
        # each field is bounded by the schema; the rules across fields live here
        if self.retry.max_backoff_s < self.retry.initial_backoff_s:
            raise InvalidInput(
                f"retry.max_backoff_s ({self.retry.max_backoff_s:g}) must be at least "
                f"retry.initial_backoff_s ({self.retry.initial_backoff_s:g})"
            )
        if self.ssl.recheck_interval_s < self.ssl.fast_interval_s:
            raise InvalidInput(
                f"ssl.recheck_interval_s ({self.ssl.recheck_interval_s}) must be at least "
                f"ssl.fast_interval_s ({self.ssl.fast_interval_s}): fast mode checks more "
                "often than the normal re-check, not less"
            )
        if self.usage.fresh_s > self.usage.period_s:
            raise InvalidInput(
                f"usage.fresh_s ({self.usage.fresh_s}) must be at most usage.period_s "
                f"({self.usage.period_s}): a listing is fresh for at most one period"
            )

    @classmethod
    def from_json(cls, document: object) -> RuntimeSettingsValues:
        """A complete settings document → values, or InvalidInput naming the field."""
        return _build(parse_document(document, complete=True))

    def as_json(self) -> dict[str, Any]:
        """The document ``GET /v1/settings`` shows and ``Changed`` records."""
        return nest(self._flat())

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
            "ssl.fast_attempts": self.ssl.fast_attempts,
            "ssl.fast_interval_s": self.ssl.fast_interval_s,
            "ssl.recheck_interval_s": self.ssl.recheck_interval_s,
            "ssl.active_interval_s": self.ssl.active_interval_s,
            "ssl.freeze_after_failures": self.ssl.freeze_after,
            "ssl.freeze_s": self.ssl.freeze_s,
            "usage.period_s": self.usage.period_s,
            "usage.fresh_s": self.usage.fresh_s,
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
    return SettingsUpdate(parse_document(body, complete=False))


class RuntimeSettings(Aggregate):
    class Adopted(Aggregate.Created):
        """The baseline the first change started from: the defaults of that moment."""

        values: dict[str, Any]
        actor: str

        class_version = 3

        @staticmethod
        def upcast_v1_v2(state: dict[str, Any]) -> None:
            _add_ssl_section(state)

        @staticmethod
        def upcast_v2_v3(state: dict[str, Any]) -> None:
            _add_usage_section(state)

    def __init__(self, values: dict[str, Any], actor: str) -> None:
        self.values = RuntimeSettingsValues.from_json(values)

    class Changed(Aggregate.Event):
        """New values (the whole document), the dotted names that changed, who changed them."""

        values: dict[str, Any]
        changed: list[str]
        actor: str

        class_version = 3

        @staticmethod
        def upcast_v1_v2(state: dict[str, Any]) -> None:
            _add_ssl_section(state)

        @staticmethod
        def upcast_v2_v3(state: dict[str, Any]) -> None:
            _add_usage_section(state)

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
        ssl=SslCadence(
            fast_attempts=flat["ssl.fast_attempts"],
            fast_interval_s=flat["ssl.fast_interval_s"],
            recheck_interval_s=flat["ssl.recheck_interval_s"],
            active_interval_s=flat["ssl.active_interval_s"],
            freeze_after=flat["ssl.freeze_after_failures"],
            freeze_s=flat["ssl.freeze_s"],
        ),
        usage=UsageSettings(period_s=flat["usage.period_s"], fresh_s=flat["usage.fresh_s"]),
    )


def ssl_section(cadence: SslCadence) -> dict[str, int]:
    """The ``ssl`` section of a settings document."""
    return {
        "fast_attempts": cadence.fast_attempts,
        "fast_interval_s": cadence.fast_interval_s,
        "recheck_interval_s": cadence.recheck_interval_s,
        "active_interval_s": cadence.active_interval_s,
        "freeze_after_failures": cadence.freeze_after,
        "freeze_s": cadence.freeze_s,
    }


def _add_ssl_section(state: dict[str, Any]) -> None:
    """Version 1 documents were recorded before the ``ssl`` section: it had its defaults."""
    values = dict(state["values"])
    values.setdefault("ssl", ssl_section(SSL_DEFAULTS))
    state["values"] = values


def usage_section(usage: UsageSettings) -> dict[str, int]:
    """The ``usage`` section of a settings document."""
    return {"period_s": usage.period_s, "fresh_s": usage.fresh_s}


def _add_usage_section(state: dict[str, Any]) -> None:
    """Version 2 documents were recorded before the ``usage`` section: it had its defaults."""
    values = dict(state["values"])
    values.setdefault("usage", usage_section(USAGE_DEFAULTS))
    state["values"] = values
