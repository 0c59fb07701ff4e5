"""A runtime settings document, as ``GET /v1/settings`` shows it and ``PUT`` takes it.

Consumes a JSON body (complete, or partial for an update); emits its validated values keyed by
dotted name (``retry.max_attempts``), or raises InvalidInput naming the field: unknown keys,
wrong types and values out of bounds are refused. ``nest`` turns such flat values back into the
document. The RuntimeSettings aggregate (domain/runtime_settings.py) builds its values from
them and checks the rule across fields; ``check_outside_references`` checks what a change
names outside the document (registered nodes, the WHMCS API).
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from typing import Any

from domain.errors import InvalidInput
from domain.server import MAX_CONCURRENCY, parse_bounded_int, parse_server_id
from domain.ticket import PRIORITIES

MAX_ATTEMPTS = 100  # RetryPolicy's own bounds
MAX_BACKOFF_S = 86_400.0
MAX_BATCH_SIZE = 10_000
MAX_PER_SERVER = 1_000
MAX_STUCK_AFTER_S = 7 * 86_400.0
MAX_CLEAN_AFTER_S = 366 * 86_400.0
MAX_DEPARTMENT_ID = 2**31 - 1
# SSL cadence bounds: fast checks no closer than the scheduler's tick allows them to matter,
# and nothing so rare that a certificate could expire unseen (the shortest lives 160 hours)
MAX_FAST_ATTEMPTS = 100
MIN_FAST_INTERVAL_S, MAX_FAST_INTERVAL_S = 5, 3_600
MIN_RECHECK_S, MAX_RECHECK_S = 60, 86_400
MIN_ACTIVE_S, MAX_ACTIVE_S = 300, 86_400
MAX_FREEZE_AFTER = 100
MIN_FREEZE_S, MAX_FREEZE_S = 60, 7 * 86_400
# usage syncs: a node listed at most every second, at least once a week
MAX_USAGE_PERIOD_S = 7 * 86_400

Check = Callable[[object, str], Any]


def _whole(lower: int, upper: int) -> Check:
    def check(raw: object, name: str) -> int:
        return parse_bounded_int(raw, name, lower, upper)

    return check


def _seconds(upper: float) -> Check:
    def check(raw: object, name: str) -> float:
        if isinstance(raw, bool) or not isinstance(raw, int | float):
            raise InvalidInput(f"{name} must be a number of seconds")
        # refuses NaN and infinity too (math.isfinite raises on an int too big for a float)
        if not 0 < raw <= upper:
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
    "ssl": {
        "fast_attempts": _whole(0, MAX_FAST_ATTEMPTS),
        "fast_interval_s": _whole(MIN_FAST_INTERVAL_S, MAX_FAST_INTERVAL_S),
        "recheck_interval_s": _whole(MIN_RECHECK_S, MAX_RECHECK_S),
        "active_interval_s": _whole(MIN_ACTIVE_S, MAX_ACTIVE_S),
        "freeze_after_failures": _whole(1, MAX_FREEZE_AFTER),
        "freeze_s": _whole(MIN_FREEZE_S, MAX_FREEZE_S),
    },
    "usage": {
        "period_s": _whole(1, MAX_USAGE_PERIOD_S),
        "fresh_s": _whole(0, MAX_USAGE_PERIOD_S),
    },
}


def parse_document(body: object, *, complete: bool) -> dict[str, Any]:
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


WHMCS_API_VARIABLES = (
    "HOSTWRIGHT_WHMCS_URL, HOSTWRIGHT_WHMCS_IDENTIFIER and HOSTWRIGHT_WHMCS_SECRET"
)


def check_outside_references(
    fields: Mapping[str, Any], *, unregistered: Collection[str], whmcs_api: bool
) -> None:
    """What a valid change names outside the document must be there, or the change would
    only fail later, in a log line nobody reads: a per-server limit for a node that is not
    registered (``unregistered``: the ids of ``concurrency.per_server`` no node has), or
    tickets enabled where the WHMCS API is not configured. InvalidInput naming the field."""
    if unregistered:
        raise InvalidInput(
            f"concurrency.per_server: server(s) {', '.join(sorted(unregistered))} not "
            "registered (GET /v1/servers lists the nodes; POST /v1/servers registers one)"
        )
    if fields.get("tickets.enabled") is True and not whmcs_api:
        raise InvalidInput(
            "tickets.enabled: failure tickets need the WHMCS API; set "
            f"{WHMCS_API_VARIABLES} (on the gateway and the ticket desk) first"
        )


def _refuse_unknown(given: dict[Any, Any], known: Mapping[str, object], prefix: str) -> None:
    unknown = sorted(f"{prefix}{name}" for name in map(str, given) if name not in known)
    if unknown:
        raise InvalidInput(
            f"unknown setting(s): {', '.join(unknown)}; "
            f"known here: {', '.join(prefix + name for name in known)}"
        )


def nest(flat: Mapping[str, Any]) -> dict[str, Any]:
    document: dict[str, Any] = {}
    for name, value in flat.items():
        section, _, leaf = name.partition(".")
        if leaf:
            document.setdefault(section, {})[leaf] = value
        else:
            document[section] = value
    return document
