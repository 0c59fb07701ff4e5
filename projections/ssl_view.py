"""The SSL view: one row per certificate, what ``GET /v1/services/{id}/ssl`` shows and what
the SSL desk's tick asks for (``next_check_at``).

Consumes every Certificate event but ``KeyResealed``; emits rows of ``ssl_certificates``
keyed by the certificate's id (a service's ``web`` and ``mail`` certificates, and the vanity
services' shared wildcard, whose ``service_id`` is null: PostgreSQL allows no null in a
primary key, so the key is the id that (service, role) names; the pair is indexed).

A pure fold of the events' own fields and timestamps: ``next_check_at``, the renewal moment
and the ARI window are what the events recorded, never worked out here from settings or the
clock. A vanity site's row (mode ``shared``) is ``pending`` until the provider's wildcard is
installed on it (``WildcardInstalled``), then ``issued`` with the wildcard's names, issuer and
dates: the certificate its node serves. The state follows the Certificate aggregate's
transitions for what is shown: a freeze
ends (``state`` back to where it was) only at an event recorded after it ended, as in the
aggregate; readers compare ``frozen_until`` with their own clock. Nothing secret is kept: no
key (sealed or not), no PEM; the certificate's public facts only.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from domain.certificate import FROZEN_BY_FAILURES, Certificate
from projections.view import (
    Recorded,
    Row,
    RowLoader,
    Rows,
    Table,
    aggregate_id,
    columns,
    event_time,
    iso_time,
)

SSL_CERTIFICATES = Table(
    name="ssl_certificates",
    columns=columns(
        "certificate_id service_id role mode state names:json serial issuer not_before not_after"
        " frozen_until frozen_kind frozen_reason next_check_at renew_at renewal_source ari:json"
        " last_error last_check installed:json warned:json updated_at"
    ),
    key=("certificate_id",),
    indexes=(("service_id", "role"), ("next_check_at",), ("mode", "not_after")),
)

_NO_CURRENT: Row = {"serial": None, "issuer": None, "not_before": None, "not_after": None}
_THAWED: Row = {"frozen_until": None, "frozen_kind": None, "frozen_reason": None}


def _resting(row: Row) -> str:
    if row.get("serial") is not None:
        return "issued"
    return "failed" if row.get("last_error") else "pending"


def _thaw(row: Row) -> Row:
    changed = dict(_THAWED)
    if row.get("state") == "frozen":
        changed["state"] = _resting({**row, **changed})
    return changed


def _thaw_if_over(row: Row, event: Any) -> Row:
    until = row.get("frozen_until")
    return _thaw(row) if until is not None and event_time(event) >= until else {}


def _current(facts: dict[str, Any]) -> Row:
    return {
        "serial": facts["serial"],
        "issuer": facts["issuer"],
        "not_before": iso_time(_time(facts["not_before"])),
        "not_after": iso_time(_time(facts["not_after"])),
    }


def _time(value: Any) -> datetime:
    return datetime.fromisoformat(value) if isinstance(value, str) else value


def _when(moment: Any) -> str | None:
    return None if moment is None else iso_time(moment)


def _settled(row: Row, facts: dict[str, Any]) -> Row:
    """A certificate is current: nothing wanted, nothing failing (the aggregate's
    ``_settled``)."""
    return {
        **_thaw(row),
        **_current(facts),
        "state": "issued",
        "last_error": None,
        "last_check": None,
        "warned": [],
    }


def _seeded(row: Row, event: Certificate.Seeded) -> Row:
    return {
        "certificate_id": aggregate_id(event),
        "service_id": event.service_id,
        "role": event.role,
        "mode": event.mode,
        "state": "pending",
        "names": list(event.names),
        **_NO_CURRENT,
        **_THAWED,
        "next_check_at": None,
        "renew_at": None,
        "renewal_source": None,
        "ari": None,
        "last_error": None,
        "last_check": None,
        "installed": {},
        "warned": [],
    }


def _issue_requested(row: Row, event: Certificate.IssueRequested) -> Row:
    if event.reinstall:  # ours wanted back on its node: not taken as installed till it is
        return {"installed": {}, "next_check_at": event_time(event)}
    thawed = _thaw(row) if row.get("frozen_kind") == FROZEN_BY_FAILURES else {}
    return {**thawed, "next_check_at": event_time(event)}


def _checked(row: Row, event: Certificate.Checked) -> Row:
    changed = {**_thaw_if_over(row, event), "next_check_at": iso_time(event.next_check_at)}
    if event.reason:  # why nothing changed (the CA away, a check stopped half-way)
        changed["last_error"] = event.reason
    return changed


def _preflight_failed(row: Row, event: Certificate.PreflightFailed) -> Row:
    changed = {
        **_thaw_if_over(row, event),
        "last_error": event.reason,
        "last_check": event.check,
        "next_check_at": iso_time(event.next_check_at),
    }
    if row.get("serial") is None:
        changed["state"] = "failed"
    return changed


def _adopted(row: Row, event: Certificate.Adopted) -> Row:
    return _settled(row, event.facts)


def _order_placed(row: Row, event: Certificate.OrderPlaced) -> Row:
    state = "renewing" if row.get("serial") is not None else "checking"
    return {**_thaw_if_over(row, event), "state": state}


def _order_abandoned(row: Row, event: Certificate.OrderAbandoned) -> Row:
    return {"state": _resting(row)}


def _issued(row: Row, event: Certificate.Issued) -> Row:
    return _settled(row, event.facts)


def _installed(row: Row, event: Certificate.Installed) -> Row:
    return {"installed": {**(row.get("installed") or {}), event.server_id: event.serial}}


def _wildcard_installed(row: Row, event: Certificate.WildcardInstalled) -> Row:
    return {
        **_settled(row, event.facts),
        "names": list(event.facts["names"]),  # what the site is served: the wildcard
        "installed": {**(row.get("installed") or {}), event.server_id: event.facts["serial"]},
        "next_check_at": iso_time(event.next_check_at),
    }


def _issue_failed(row: Row, event: Certificate.IssueFailed) -> Row:
    return {
        "last_error": event.reason,
        "last_check": None,
        "next_check_at": iso_time(event.next_check_at),
        "state": "renewing" if row.get("serial") is not None else "failed",
    }


def _frozen(row: Row, event: Certificate.Frozen) -> Row:
    return {
        "state": "frozen",
        "frozen_until": iso_time(event.until),
        "frozen_kind": event.kind,
        "frozen_reason": event.reason,
        "next_check_at": iso_time(event.until),
    }


def _renewal_scheduled(row: Row, event: Certificate.RenewalScheduled) -> Row:
    ari = None
    if event.window_start is not None:
        ari = {
            "start": iso_time(event.window_start),
            "end": _when(event.window_end),
            "explanation_url": event.explanation_url,
        }
    return {
        "renew_at": iso_time(event.at),
        "renewal_source": event.source,
        "ari": ari,
        "next_check_at": iso_time(event.next_check_at),
    }


def _custom_uploaded(row: Row, event: Certificate.CustomUploaded) -> Row:
    return {
        **_thaw(row),
        **_current(event.facts),
        "mode": "custom",
        "state": "issued",
        "last_error": None,
        "renew_at": None,
        "renewal_source": None,
        "ari": None,
        "warned": [],
        "next_check_at": event_time(event),
    }


def _custom_removed(row: Row, event: Certificate.CustomRemoved) -> Row:
    return {
        **_NO_CURRENT,
        "mode": "auto",
        "state": "pending",
        "warned": [],
        "next_check_at": event_time(event),
    }


def _expiry_warned(row: Row, event: Certificate.ExpiryWarned) -> Row:
    warned = sorted({*(row.get("warned") or []), event.threshold_days}, reverse=True)
    return {"warned": warned}


def _retired(row: Row, event: Certificate.Retired) -> Row:
    return {"state": "retired", "next_check_at": None}


FOLDS: dict[type[Any], Callable[[Row, Any], Row]] = {
    Certificate.Seeded: _seeded,
    Certificate.IssueRequested: _issue_requested,
    Certificate.Checked: _checked,
    Certificate.PreflightFailed: _preflight_failed,
    Certificate.Adopted: _adopted,
    Certificate.OrderPlaced: _order_placed,
    Certificate.OrderAbandoned: _order_abandoned,
    Certificate.Issued: _issued,
    Certificate.Installed: _installed,
    Certificate.WildcardInstalled: _wildcard_installed,
    Certificate.IssueFailed: _issue_failed,
    Certificate.Frozen: _frozen,
    Certificate.RenewalScheduled: _renewal_scheduled,
    Certificate.CustomUploaded: _custom_uploaded,
    Certificate.CustomRemoved: _custom_removed,
    Certificate.ExpiryWarned: _expiry_warned,
    Certificate.Retired: _retired,
}


class SslView:
    """Consumes Certificate events; emits ``ssl_certificates`` rows."""

    name = "ssl"
    version = 1
    tables: tuple[Table, ...] = (SSL_CERTIFICATES,)
    folds: frozenset[type[Any]] = frozenset(FOLDS)

    def prefetch(self, page: Sequence[Recorded], rows: RowLoader) -> None:
        """Loads the rows of the page's certificates (a seeded one's row is new)."""
        keys = {
            (aggregate_id(r.event),)
            for r in page
            if type(r.event) in FOLDS and not isinstance(r.event, Certificate.Seeded)
        }
        rows.load(SSL_CERTIFICATES.name, keys)

    def apply(self, recorded: Recorded, rows: Rows) -> None:
        event = recorded.event
        fold = FOLDS.get(type(event))
        if fold is None:
            return
        key = (aggregate_id(event),)
        row = rows.get(SSL_CERTIFICATES.name, key)
        if row is None and not isinstance(event, Certificate.Seeded):
            return  # never seeded: nothing to show
        before = row or {}
        rows.put(
            SSL_CERTIFICATES.name,
            {**before, **fold(before, event), "updated_at": event_time(event)},
        )
