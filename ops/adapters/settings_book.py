"""``StoreSettingsBook``: the gateway's SettingsBook port over the event store.

It reads the RuntimeSettings aggregate (the defaults from the process settings while none is
recorded) and records changes on it: the first change saves ``RuntimeSettings.Adopted`` (the
defaults it started from) and ``RuntimeSettings.Changed`` in one transaction, later ones a
``Changed`` each. Once a change is recorded, the recorded values win over the process settings.
"""

from __future__ import annotations

from datetime import datetime

from domain.errors import InvalidInput
from domain.runtime_settings import (
    SETTINGS_ID,
    SSL_DEFAULTS,
    RuntimeSettings,
    RuntimeSettingsValues,
    SettingsApplied,
    SettingsUpdate,
    ssl_section,
)
from ops.settings import Settings, SettingsError
from ops.store.event_store import EventStore
from ops.store.unit_of_work import Decision

DEFAULT_CONCURRENCY = 1  # what ServerRegistry assumes for a server it does not know
_MAX_CONFLICT_RETRIES = 5


class StoreSettingsBook:
    """Implements ``gateway.ports.SettingsBook``. Synchronous, like the store behind it."""

    def __init__(self, store: EventStore, defaults: RuntimeSettingsValues) -> None:
        self._store = store
        self._defaults = defaults
        self._settings = store.repository(RuntimeSettings, "settings")

    def current(self) -> RuntimeSettingsValues:
        recorded = self._load()
        return self._defaults if recorded is None else recorded.values

    def change(self, update: SettingsUpdate, now: datetime, actor: str) -> SettingsApplied:
        """Records the update when it changes something. InvalidInput (nothing recorded) when
        the merged values are not valid; Conflict when other writers keep getting there first."""

        def decide() -> Decision[SettingsApplied]:
            aggregate = self._load() or RuntimeSettings.adopt(self._defaults, now, actor)
            changed = aggregate.change(update, now, actor)
            return Decision.of(
                SettingsApplied(aggregate.values, changed), aggregate, changed=bool(changed)
            )

        return self._store.work.run(
            decide,
            busy="the settings are being changed by someone else; try again",
            attempts=_MAX_CONFLICT_RETRIES,
        )

    def _load(self) -> RuntimeSettings | None:
        return self._settings.find(SETTINGS_ID)


def runtime_defaults(settings: Settings) -> RuntimeSettingsValues:
    """The runtime settings in force until the first change, all from the process settings
    (concurrency: ``DEFAULT_CONCURRENCY``). SettingsError when they are out of bounds."""
    document = {
        "retry": {
            "max_attempts": settings.retry_max_attempts,
            "initial_backoff_s": settings.retry_initial_backoff_s,
            "max_backoff_s": settings.retry_max_backoff_s,
        },
        "concurrency": {"default": DEFAULT_CONCURRENCY, "per_server": {}},
        "batch_size": settings.dispatch_batch,
        "tickets": {
            "enabled": settings.tickets_enabled,
            "department_id": settings.tickets_department_id,
            "priority": settings.tickets_priority,
        },
        "queue": {
            "stuck_after_s": settings.stuck_threshold_s,
            "clean_completed_after_s": settings.clean_completed_after_s,
        },
        "ssl": ssl_section(SSL_DEFAULTS),  # no process setting: changed at run time only
        "usage": {"period_s": int(settings.usage_period_s), "fresh_s": int(settings.usage_fresh_s)},
    }
    try:
        return RuntimeSettingsValues.from_json(document)
    except InvalidInput as exc:
        raise SettingsError(f"the process settings give invalid runtime settings: {exc}") from None
