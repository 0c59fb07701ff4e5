"""The usage view: each service's figures, the one source of the gauges and of billing.

Consumes ``Service.Ordered`` / ``Placed`` / ``PlanChangeRequested`` / ``Terminated`` (who the
service is, which users its figures are the sum of: domain/usage_accounts.py) and the
node listings (``NodeUsers.Listed``, ``NodeMailboxes.Listed``) and failures
(``ServerUsage.SyncFailed``).
Emits rows of:

- ``usage_services``: one per service — per account (``figures``: server/user → figures,
  each with its ``collected_at`` and ``stale``), its bandwidth counters (``bandwidth``:
  month, last reported, billed, its listing's time), and the sums the API shows and bills:
  ``disk_mb``, ``bandwidth_mb`` (month to date as the nodes report it), ``bandwidth_billed_mb`` (the
  month's, never lower than before: domain/usage_figures.py ``billed_bandwidth``),
  ``mail_accounts``, ``databases``, ``web_domains``, ``dns_domains``, ``mail_domains``,
  ``collected_at`` (the oldest of its accounts' last listings), ``stale`` and ``stale_since``;
- ``usage_history``: the service's sums and plan at each listing that changed the sums and
  at each plan change (once listed), keyed by (service, time): what ``as_of`` reads. A
  service's times never go back: two nodes' listings are stored in the order their syncs
  commit, not always in the order of their times, and a listing folded after one of a later
  time replaces that row (``history_at`` on ``usage_services``: the time of its last row), so
  no row shows a state the next fold undid;
- ``usage_accounts`` (server, user → service) and ``usage_mailboxes`` (mail domain, account →
  vanity service): the lookups a listing is folded through, each the row of the one live
  service that holds the name. A service's own ``Terminated`` deletes its rows, so a
  username or label taken again after termination (claims are released then) is found as
  the new holder's, and each row changes only by its own service's events, as sharded
  replay needs (ops/views/replay_shards.py);
- ``usage_nodes``: one per node (no service): its last listing's time, its users (what a
  failure marks stale), its sync state and last error.

A user no service owns (the provider's shared mail user, users made by hand) is never
counted; a vanity service counts its own web user and its one mailbox from the shared user's
mailbox listing. A pure fold of the events' own fields: times are the listings' own.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from domain.server_usage import ServerUsage
from domain.service import Service
from domain.step_chain import derive_username
from domain.usage_accounts import service_accounts, vanity_mailbox
from domain.usage_figures import billed_bandwidth
from domain.usage_listing import NodeMailboxes, NodeUsers
from projections.service_ids import ServiceIds
from projections.view import (
    Recorded,
    Row,
    RowLoader,
    Rows,
    Table,
    columns,
    event_time,
    iso_time,
)

SUMMED: tuple[str, ...] = (
    "disk_mb",
    "bandwidth_mb",
    "web_domains",
    "dns_domains",
    "mail_domains",
    "mail_accounts",
    "databases",
)

USAGE_SERVICES = Table(
    name="usage_services",
    columns=columns(
        "service_id client_id mode domain label username status plan:json accounts:json"
        " mailbox:json figures:json bandwidth:json disk_mb:int bandwidth_mb:int"
        " bandwidth_billed_mb:int billing_month web_domains:int dns_domains:int"
        " mail_domains:int mail_accounts:int databases:int collected_at stale:bool"
        " stale_since updated_at history_at"
    ),
    key=("service_id",),
    indexes=(("client_id",), ("domain",)),
)
USAGE_HISTORY = Table(
    name="usage_history",
    columns=columns("service_id at totals:json"),
    key=("service_id", "at"),
)
USAGE_ACCOUNTS = Table(
    name="usage_accounts",
    columns=columns("server_id username service_id role"),
    key=("server_id", "username"),
    indexes=(("service_id",),),
)
USAGE_MAILBOXES = Table(
    name="usage_mailboxes",
    columns=columns("mail_domain account service_id"),
    key=("mail_domain", "account"),
)
USAGE_NODES = Table(
    name="usage_nodes",
    columns=columns(
        "server_id service_id state users:json mailboxes:json collected_at last_error"
        " failed_at retry_at updated_at"
    ),
    key=("server_id",),
)
_ZERO: Row = {name: 0 for name in SUMMED}


def _totals(figures: dict[str, Any], bandwidth: dict[str, Any]) -> Row:
    """The service's sums over its accounts and mailbox, and the month's billed bandwidth."""
    sums = dict(_ZERO)
    for entry in figures.values():
        for name in SUMMED:
            sums[name] += int(entry.get(name, 0))
    month = max((c["month"] for c in bandwidth.values()), default=None)
    billed = sum(c["billed"] for c in bandwidth.values() if c["month"] == month)
    times = [entry["collected_at"] for entry in figures.values()]
    stale = [entry["stale_since"] for entry in figures.values() if entry.get("stale_since")]
    return {
        **sums,
        "bandwidth_billed_mb": billed,
        "billing_month": month,
        "collected_at": min(times) if times else None,
        "stale": bool(stale),
        "stale_since": min(stale) if stale else None,
    }


def history_totals(row: Row) -> Row:
    """What ``usage_history`` keeps of a service's row at one time: its sums, and the plan
    in force (the limits ``as_of`` shows beside them)."""
    names = (*SUMMED, "bandwidth_billed_mb", "billing_month", "collected_at", "stale", "plan")
    return {name: row.get(name) for name in names}


class UsageView:
    """Consumes Service and ServerUsage events; emits the tables in the module docstring."""

    name = "usage"
    # 2: bandwidth counters keep their listing's time (a drop adds nothing); 3: a service's
    # history times never go back (history_at)
    version = 3
    folds: frozenset[type[Any]] = frozenset(
        {
            Service.Ordered,
            Service.Placed,
            Service.PlanChangeRequested,
            Service.Terminated,
            NodeUsers.Listed,
            NodeMailboxes.Listed,
            ServerUsage.SyncFailed,
        }
    )

    def __init__(self) -> None:
        self._ids = ServiceIds("usage_aggregates")
        self.tables: tuple[Table, ...] = (
            USAGE_SERVICES,
            USAGE_HISTORY,
            USAGE_ACCOUNTS,
            USAGE_MAILBOXES,
            USAGE_NODES,
            self._ids.table,
        )

    def apply(self, recorded: Recorded, rows: Rows) -> None:
        event = recorded.event
        kind = type(event)
        if kind is Service.Ordered:
            self._ordered(event, rows)
        elif kind is NodeUsers.Listed:
            self._users_listed(event, rows)
        elif kind is NodeMailboxes.Listed:
            self._mailboxes_listed(event, rows)
        elif kind is ServerUsage.SyncFailed:
            self._sync_failed(event, rows)
        elif kind in (Service.Placed, Service.PlanChangeRequested, Service.Terminated):
            self._service_changed(event, rows)

    def prefetch(self, page: Sequence[Recorded], rows: RowLoader) -> None:
        """Loads the accounts a page's listings name, and their services' rows."""
        account_keys: set[tuple[Any, ...]] = set()
        mailbox_keys: set[tuple[Any, ...]] = set()
        for recorded in page:
            event = recorded.event
            if type(event) is NodeUsers.Listed:
                server_id = _server_of(event, rows)
                account_keys |= {(server_id, user) for user in event.users}
            elif type(event) is NodeMailboxes.Listed:
                mailbox_keys |= {(event.mail_domain, account) for account in event.mailboxes}
        found = rows.load(USAGE_ACCOUNTS.name, account_keys)
        found += rows.load(USAGE_MAILBOXES.name, mailbox_keys)
        rows.load(USAGE_SERVICES.name, {(row["service_id"],) for row in found})

    # --- services ---------------------------------------------------------------------------

    def _ordered(self, event: Service.Ordered, rows: Rows) -> None:
        self._ids.remember(event, rows)
        mailbox = vanity_mailbox(event.domain, event.label) if event.mode == "vanity" else None
        rows.put(
            USAGE_SERVICES.name,
            {
                "service_id": event.service_id,
                "client_id": event.client_id,
                "mode": event.mode,
                "domain": event.domain,
                "label": event.label,
                "username": event.username or derive_username(event.domain, event.service_id),
                "status": "active",
                "plan": event.plan,
                "accounts": [],
                "mailbox": None if mailbox is None else list(mailbox),
                "figures": {},
                "bandwidth": {},
                **_ZERO,
                "bandwidth_billed_mb": 0,
                "billing_month": None,
                "collected_at": None,
                "stale": False,
                "stale_since": None,
                "updated_at": event_time(event),
                "history_at": None,
            },
        )
        if mailbox is not None:
            rows.put(
                USAGE_MAILBOXES.name,
                {"mail_domain": mailbox[0], "account": mailbox[1], "service_id": event.service_id},
            )

    def _service_changed(self, event: Any, rows: Rows) -> None:
        service_id = self._ids.of(event, rows)
        row = None if service_id is None else rows.get(USAGE_SERVICES.name, (service_id,))
        if row is None:
            return
        changed: Row = {"updated_at": event_time(event)}
        if isinstance(event, Service.PlanChangeRequested):
            changed["plan"] = event.plan
            if row["collected_at"] is not None:  # the figures in force now meet a new plan
                changed["history_at"] = _kept(
                    {**row, **changed}, _history_time(row, changed["updated_at"]), rows
                )
        elif isinstance(event, Service.Terminated):
            # its names may be held by another service next (claims are released at
            # termination): its lookups go with it, by its own event, and its rows keep the
            # figures of its last listing
            changed["status"] = "terminated"
            self._let_go(row, [tuple(a) for a in row["accounts"] or []], rows)
            if row["mailbox"]:
                mail_domain, account = row["mailbox"]
                owner = rows.get(USAGE_MAILBOXES.name, (mail_domain, account))
                if owner is not None and owner["service_id"] == row["service_id"]:
                    rows.delete(USAGE_MAILBOXES.name, (mail_domain, account))
        else:
            accounts = service_accounts(row["mode"], row["username"], event.placement)
            changed["accounts"] = [list(a) for a in accounts]  # placed once (domain/service.py)
            for account in accounts:
                rows.put(
                    USAGE_ACCOUNTS.name,
                    {
                        "server_id": account.server_id,
                        "username": account.user,
                        "service_id": row["service_id"],
                        "role": account.role,
                    },
                )
        rows.put(USAGE_SERVICES.name, {**row, **changed})

    @staticmethod
    def _let_go(row: Row, accounts: list[tuple[Any, ...]], rows: Rows) -> None:
        """Deletes the lookups of these (role, server, user) accounts the service still holds
        (never another service's)."""
        for _role, server_id, user in accounts:
            owner = rows.get(USAGE_ACCOUNTS.name, (server_id, user))
            if owner is not None and owner["service_id"] == row["service_id"]:
                rows.delete(USAGE_ACCOUNTS.name, (server_id, user))

    # --- listings ---------------------------------------------------------------------------

    def _users_listed(self, event: NodeUsers.Listed, rows: Rows) -> None:
        server_id = _server_of(event, rows)
        at = iso_time(event.collected_at)
        for user, figures in event.users.items():
            owner = rows.get(USAGE_ACCOUNTS.name, (server_id, user))
            if owner is None:
                continue  # no service's (the provider's shared users, one made by hand)
            row = rows.get(USAGE_SERVICES.name, (owner["service_id"],))
            if row is None or row["status"] == "terminated":
                continue  # (its lookups go at its termination: none is left to find)
            key = f"{server_id}/{user}"
            counter = billed_bandwidth(
                (row["bandwidth"] or {}).get(key),
                event.collected_at,
                int(figures.get("bandwidth_mb", 0)),
            )
            entry = {**figures, "collected_at": at, "stale_since": None}
            self._put_service(
                row,
                {**row["figures"], key: entry},
                {**row["bandwidth"], key: counter},
                at,
                rows,
            )
        node = rows.get(USAGE_NODES.name, (server_id,)) or {}
        rows.put(
            USAGE_NODES.name,
            {
                **_node_base(server_id, node),
                "state": "listed",
                "users": sorted(event.users),
                "mailboxes": {},
                "collected_at": at,
                "last_error": None,
                "failed_at": None,
                "retry_at": None,
                "updated_at": event_time(event),
            },
        )

    def _mailboxes_listed(self, event: NodeMailboxes.Listed, rows: Rows) -> None:
        server_id = _server_of(event, rows)
        at = iso_time(event.collected_at)
        for account, figures in event.mailboxes.items():
            owner = rows.get(USAGE_MAILBOXES.name, (event.mail_domain, account))
            if owner is None:
                continue  # a mailbox of the provider's own (postmaster, info …)
            row = rows.get(USAGE_SERVICES.name, (owner["service_id"],))
            if row is None or row["status"] == "terminated":
                continue
            entry = {
                "disk_mb": int(figures.get("disk_mb", 0)),
                "mail_accounts": 1,
                "collected_at": at,
                "stale_since": None,
            }
            key = f"{server_id}/{event.mail_domain}/{account}@mailbox"
            self._put_service(row, {**row["figures"], key: entry}, row["bandwidth"], at, rows)
        node = rows.get(USAGE_NODES.name, (server_id,)) or _node_base(server_id, {})
        listed = {**(node.get("mailboxes") or {}), event.mail_domain: sorted(event.mailboxes)}
        rows.put(USAGE_NODES.name, {**node, "mailboxes": listed, "updated_at": event_time(event)})

    def _sync_failed(self, event: ServerUsage.SyncFailed, rows: Rows) -> None:
        server_id = _server_of(event, rows)
        at = event_time(event)
        node = rows.get(USAGE_NODES.name, (server_id,)) or _node_base(server_id, {})
        owners = [rows.get(USAGE_ACCOUNTS.name, (server_id, u)) for u in node.get("users") or []]
        keys = [(o, f"{server_id}/{o['username']}") for o in owners if o is not None]
        for mail_domain, accounts in (node.get("mailboxes") or {}).items():
            for account in accounts:
                owner = rows.get(USAGE_MAILBOXES.name, (mail_domain, account))
                if owner is not None:
                    keys.append((owner, f"{server_id}/{mail_domain}/{account}@mailbox"))
        for owner, key in keys:
            row = rows.get(USAGE_SERVICES.name, (owner["service_id"],))
            entry = None if row is None else row["figures"].get(key)
            if row is None or entry is None or entry.get("stale_since"):
                continue
            figures = {**row["figures"], key: {**entry, "stale_since": at}}
            self._put_service(row, figures, row["bandwidth"], None, rows)
        rows.put(
            USAGE_NODES.name,
            {
                **node,
                "state": "failed",
                "last_error": event.reason,
                "failed_at": at,
                "retry_at": iso_time(event.retry_at),
                "updated_at": at,
            },
        )

    def _put_service(
        self,
        row: Row,
        figures: dict[str, Any],
        bandwidth: dict[str, Any],
        at: str | None,
        rows: Rows,
    ) -> None:
        """Puts the service's new figures and sums; a listing (``at``) that changed the sums
        is kept in its history (``collected_at`` there: when they were first seen)."""
        new = {**row, "figures": figures, "bandwidth": bandwidth, **_totals(figures, bandwidth)}
        new["updated_at"] = at or new["updated_at"]
        if at is not None and (_changed_figures(new, row) or row.get("collected_at") is None):
            new["history_at"] = _kept(new, _history_time(row, at), rows)
        rows.put(USAGE_SERVICES.name, new)


def _history_time(row: Row, at: str) -> str:
    """The time of the service's next history row: ``at``, or its last row's time when that
    is later (a listing stamped later was folded first: its row gives way to this one)."""
    last = row.get("history_at")
    return at if last is None or at > last else last


def _kept(row: Row, at: str, rows: Rows) -> str:
    """Keeps the service's sums and plan in its history at ``at``; returns ``at``."""
    rows.put(
        USAGE_HISTORY.name,
        {"service_id": row["service_id"], "at": at, "totals": history_totals(row)},
    )
    return at


def _node_base(server_id: str, node: Row) -> Row:
    base: Row = {
        "server_id": server_id,
        "service_id": None,
        "state": None,
        "users": [],
        "mailboxes": {},
        "collected_at": None,
        "last_error": None,
        "failed_at": None,
        "retry_at": None,
        "updated_at": None,
    }
    return {**base, **node}


def _server_of(event: Any, rows: Any) -> str:
    """The node a ServerUsage event is about (its events carry it)."""
    return str(event.server_id)


def _changed_figures(new: Row, old: Row) -> bool:
    """Whether a listing changed what is billed and shown (its time alone is no change:
    the history keeps a row per change, not per listing)."""
    names = (*SUMMED, "bandwidth_billed_mb", "billing_month")
    return any(new.get(name) != old.get(name) for name in names)
