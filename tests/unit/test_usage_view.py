"""The usage view sums each service's accounts as its mode says (split: web + mail + first
DNS node; unified: one user; vanity: its web user and its mailbox, never the shared mail
user's totals), keeps a failed node's figures marked stale, and keeps a history as_of reads."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from domain.commands import OrderService
from domain.hosting_plan import HostingPlan
from domain.server_usage import ServerUsage
from domain.service import Service
from projections.usage_view import USAGE_HISTORY, USAGE_SERVICES, UsageView
from projections.view import Recorded
from tests.fakes.rows import MemoryRows

T0 = datetime(2026, 12, 3, 10, 0, tzinfo=UTC)


def figures(disk: int, bw: int = 0, mail: int = 0) -> dict[str, int]:
    return {
        "disk_mb": disk,
        "bandwidth_mb": bw,
        "web_domains": 1,
        "dns_domains": 0,
        "mail_domains": 0,
        "mail_accounts": mail,
        "databases": 0,
    }


class Fold:
    def __init__(self) -> None:
        self.view = UsageView()
        self.rows = MemoryRows([self.view])
        self.position = 0

    def apply(self, aggregate: Any) -> None:
        for event in aggregate.collect_events():
            self.position += 1
            self.view.apply(Recorded(self.position, event), self.rows)

    def order(
        self, service_id: str, mode: str, domain: str, placement: dict[str, Any], **extra: Any
    ) -> None:
        plan = HostingPlan.parse({"package": "basic", "disk_mb": 1000})
        command = OrderService(
            service_id=service_id,
            client_id="c1",
            mode=mode,
            domain=domain,
            plan=plan,
            now=T0,
            actor="whmcs",
            command_id=None,
            **extra,
        )
        service = Service.order(command, None)
        service.place(T0, placement)
        self.apply(service)

    def row(self, service_id: str) -> dict[str, Any]:
        return self.rows.tables[USAGE_SERVICES.name][(service_id,)]


SPLIT = {"web_server": "web1", "mail_server": "mail1", "dns_servers": ["dns1", "dns2"]}
UNI = {"web_server": "uni1", "mail_server": "uni1", "dns_servers": ["uni1"]}
VANITY = {"web_server": "web1", "mail_server": "mail1", "dns_servers": ["dns1"]}


def test_each_mode_sums_its_own_accounts_and_never_the_shared_user() -> None:
    fold = Fold()
    fold.order("1", "split", "shop.example", SPLIT, username="shop")
    fold.order("2", "unified", "uni.example", UNI, username="uni")
    fold.order("3", "vanity", "bob.hosted.example", VANITY, username="bobweb", label="bob")
    nodes = {name: ServerUsage.open(name, T0) for name in ("web1", "mail1", "dns1", "dns2", "uni1")}
    listings = {
        "web1": {"shop": figures(100, 10), "bobweb": figures(7, 3)},
        "mail1": {"shop": figures(50, 0, 2), "provmail": figures(9999, 0, 500)},
        "dns1": {"shop": figures(1)},
        "dns2": {"shop": figures(1)},
        "uni1": {"uni": figures(300, 30, 4)},
    }
    for name, usage in nodes.items():
        usage.request_sync(T0, "tick", fresh_s=60, lease_s=300)
        usage.start(T0, 1)
        mailboxes = None
        if name == "mail1":
            mailboxes = {
                ("provmail", "hosted.example"): {"bob": {"disk_mb": 12}, "info": {"disk_mb": 40}}
            }
        listed = usage.listed(T0 + timedelta(seconds=1), 1, listings[name], mailboxes)
        fold.apply(usage)
        for listing in listed:
            fold.apply(listing)
    split, uni, vanity = fold.row("1"), fold.row("2"), fold.row("3")
    assert (split["disk_mb"], split["mail_accounts"], split["bandwidth_billed_mb"]) == (151, 2, 10)
    assert (uni["disk_mb"], uni["mail_accounts"], uni["bandwidth_billed_mb"]) == (300, 4, 30)
    assert (vanity["disk_mb"], vanity["mail_accounts"], vanity["bandwidth_billed_mb"]) == (19, 1, 3)
    assert all(not fold.row(s)["stale"] for s in "123")

    mail = nodes["mail1"]
    mail.request_sync(T0 + timedelta(hours=1), "tick", fresh_s=60, lease_s=300)
    mail.start(T0 + timedelta(hours=1), 2)
    mail.fail(T0 + timedelta(hours=1), 2, "mail1: connection refused", retry_s=(30, 3600))
    fold.apply(mail)
    assert fold.row("1")["stale"] and fold.row("3")["stale"] and not fold.row("2")["stale"]
    assert fold.row("1")["disk_mb"] == 151 and fold.row("3")["disk_mb"] == 19  # kept
    history = fold.rows.tables[USAGE_HISTORY.name]
    assert history[("1", "2026-12-03T10:00:01.000000+00:00")]["totals"]["disk_mb"] == 151


def test_the_history_keeps_the_plan_in_force_beside_the_figures() -> None:
    fold = Fold()
    plan = HostingPlan.parse({"package": "basic", "disk_mb": 1000})
    command = OrderService(
        service_id="1",
        client_id="c1",
        mode="unified",
        domain="uni.example",
        plan=plan,
        now=T0,
        actor="whmcs",
        command_id=None,
        username="uni",
    )
    service = Service.order(command, None)
    service.place(T0, UNI)
    service.trigger_event(
        Service.PlanChangeRequested,
        timestamp=T0 + timedelta(seconds=1),
        actor="whmcs",
        command_id=None,
        plan={"package": "basic", "disk_mb": 100},
    )
    fold.apply(service)  # a plan change before any listing: no figures to keep
    assert fold.rows.tables[USAGE_HISTORY.name] == {}
    node = ServerUsage.open("uni1", T0)
    node.request_sync(T0 + timedelta(minutes=1), "tick", fresh_s=60, lease_s=300)
    node.start(T0 + timedelta(minutes=1), 1)
    listed = node.listed(T0 + timedelta(minutes=1), 1, {"uni": figures(50)})
    fold.apply(node)
    for listing in listed:
        fold.apply(listing)
    service.trigger_event(
        Service.PlanChangeRequested,
        timestamp=T0 + timedelta(hours=1),
        actor="whmcs",
        command_id=None,
        plan={"package": "big", "disk_mb": 5000},
    )
    fold.apply(service)
    history = fold.rows.tables[USAGE_HISTORY.name]
    listed_at, changed_at = sorted(at for _, at in history)
    assert history[("1", listed_at)]["totals"]["plan"]["disk_mb"] == 100
    assert history[("1", changed_at)]["totals"]["plan"]["disk_mb"] == 5000
    assert history[("1", changed_at)]["totals"]["disk_mb"] == 50


def test_a_listing_folded_after_a_later_one_of_another_node_is_in_the_history_from_then() -> None:
    """Two nodes' syncs commit in either order: the history never keeps a mix the next fold
    undid, nor goes back in time."""
    fold = Fold()
    fold.order("3", "vanity", "bob.hosted.example", VANITY, username="bobweb", label="bob")
    nodes = {name: ServerUsage.open(name, T0) for name in ("web1", "mail1")}
    listed = {}
    for usage in nodes.values():
        usage.request_sync(T0, "tick", fresh_s=60, lease_s=300)
        usage.start(T0, 1)
    mailboxes = {("provmail", "hosted.example"): {"bob": {"disk_mb": 12}}}
    early, late = T0 + timedelta(seconds=1), T0 + timedelta(seconds=2)
    listed["mail1"] = nodes["mail1"].listed(late, 1, {"provmail": figures(9999)}, mailboxes)
    listed["web1"] = nodes["web1"].listed(early, 1, {"bobweb": figures(7, 3)})
    for name in ("mail1", "web1"):  # the later listing is stored first
        fold.apply(nodes[name])
        for listing in listed[name]:
            fold.apply(listing)
    history = fold.rows.tables[USAGE_HISTORY.name]
    last = max(at for _, at in history)
    assert last == "2026-12-03T10:00:02.000000+00:00"
    assert history[("3", last)]["totals"]["disk_mb"] == 19 == fold.row("3")["disk_mb"]
    assert fold.row("3")["history_at"] == last
