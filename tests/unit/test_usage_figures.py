"""The bandwidth rule never bills a MiB twice: within a month only increases add, a drop (a
deleted domain, a recount) adds nothing, a late listing changes nothing, and across the 1st
the new month bills what the node counted since its own reset only when that reset surely
lies between two listings. Folded through the usage view: a domain deleted mid-month, a node
down over the 1st, a counter that resets on a node behind UTC and on one ahead of it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from domain.commands import OrderService
from domain.hosting_plan import HostingPlan
from domain.server_usage import ServerUsage
from domain.service import Service
from domain.usage_figures import billed_bandwidth
from projections.usage_view import USAGE_SERVICES, UsageView
from projections.view import Recorded
from tests.fakes.rows import MemoryRows

NOV = datetime(2026, 11, 10, 10, 0, tzinfo=UTC)
DEC_1 = datetime(2026, 12, 1, tzinfo=UTC)


def hours(n: float) -> timedelta:
    return timedelta(hours=n)


def bills(start: datetime, *listings: tuple[datetime, int]) -> list[tuple[str, int]]:
    counter = billed_bandwidth(None, start, 0)
    found = []
    for at, reported in listings:
        counter = billed_bandwidth(counter, at, reported)
        found.append((counter["month"], counter["billed"]))
    return found


def test_within_a_month_a_drop_adds_nothing() -> None:
    assert bills(NOV, *((NOV + hours(i), v) for i, v in enumerate((900, 1000, 100, 150), 1))) == [
        ("2026-11", 900),
        ("2026-11", 1000),
        ("2026-11", 1000),  # a domain deleted: its 900 were billed already
        ("2026-11", 1050),
    ]


def test_a_listing_older_than_the_last_changes_nothing() -> None:
    counter = billed_bandwidth(None, NOV, 100)
    later = billed_bandwidth(counter, NOV + hours(2), 300)
    assert billed_bandwidth(later, NOV + hours(1), 200) == later
    assert billed_bandwidth(later, NOV + hours(2), 50) == later


def test_a_reset_surely_between_two_listings_bills_the_new_value_whole() -> None:
    before = DEC_1 - hours(15)  # before any node's 1st
    counter = billed_bandwidth(None, before, 10)
    after = billed_bandwidth(counter, DEC_1 + hours(13), 500)  # after every node's 1st
    assert (after["month"], after["billed"]) == ("2026-12", 500)
    assert billed_bandwidth(counter, DEC_1 + hours(12), 500)["billed"] == 490  # might not yet
    early = billed_bandwidth(None, DEC_1 - hours(13), 10)  # a node ahead may have reset before
    assert billed_bandwidth(early, DEC_1 + hours(13), 500)["billed"] == 490


def test_around_the_1st_nothing_is_billed_twice() -> None:
    # a node behind UTC: not yet reset at the first listing of December, then resets
    behind = bills(
        DEC_1 - hours(30),
        (DEC_1 - hours(1), 1000),
        (DEC_1 + hours(1), 1010),
        (DEC_1 + hours(6), 30),
        (DEC_1 + hours(7), 80),
    )
    assert behind == [("2026-11", 1000), ("2026-12", 10), ("2026-12", 10), ("2026-12", 60)]
    # a node ahead of UTC: resets on the evening of the 30th
    ahead = bills(
        DEC_1 - hours(30),
        (DEC_1 - hours(4), 1000),
        (DEC_1 - hours(2), 20),
        (DEC_1 - hours(1), 50),
        (DEC_1 + hours(1), 70),
    )
    assert ahead == [("2026-11", 1000), ("2026-11", 1000), ("2026-11", 1030), ("2026-12", 20)]


# --- through the usage view -------------------------------------------------------------


class Fold:
    def __init__(self) -> None:
        self.view = UsageView()
        self.rows = MemoryRows([self.view])
        self.position = 0
        self.node = ServerUsage.open("web1", NOV - hours(1))
        self.sync_id = 0

    def apply(self, aggregate: Any) -> None:
        for event in aggregate.collect_events():
            self.position += 1
            self.view.apply(Recorded(self.position, event), self.rows)

    def order(self) -> None:
        plan = HostingPlan.parse({"package": "basic"})
        command = OrderService(
            service_id="1",
            client_id="c1",
            mode="unified",
            domain="shop.example",
            plan=plan,
            username="shop",
            now=NOV - hours(1),
            actor="whmcs",
            command_id=None,
        )
        service = Service.order(command, None)
        placement = {"web_server": "web1", "mail_server": "web1", "dns_servers": ["web1"]}
        service.place(NOV - hours(1), placement)
        self.apply(service)

    def listed(self, at: datetime, bandwidth: int) -> tuple[str, int]:
        self.node.request_sync(at, "tick", fresh_s=0, lease_s=300)
        self.sync_id += 1
        self.node.start(at, self.sync_id)
        listings = self.node.listed(at, self.sync_id, {"shop": {"bandwidth_mb": bandwidth}})
        self.apply(self.node)
        for listing in listings:
            self.apply(listing)
        row = self.rows.tables[USAGE_SERVICES.name][("1",)]
        return row["billing_month"], row["bandwidth_billed_mb"]


def test_the_view_bills_a_domain_deleted_mid_month_once() -> None:
    fold = Fold()
    fold.order()
    found = [fold.listed(NOV + hours(i), v) for i, v in enumerate((900, 1000, 100, 150))]
    assert found[-2:] == [("2026-11", 1000), ("2026-11", 1050)]


def test_the_view_bills_a_node_down_over_the_1st_for_all_it_counted_since() -> None:
    fold = Fold()
    fold.order()
    assert fold.listed(DEC_1 - hours(20), 10) == ("2026-11", 10)
    assert fold.listed(DEC_1 + hours(30), 500) == ("2026-12", 500)


def test_the_view_follows_a_counter_that_resets() -> None:
    fold = Fold()
    fold.order()
    fold.listed(DEC_1 - hours(2), 1000)
    assert fold.listed(DEC_1 + hours(1), 1010) == ("2026-12", 10)
    assert fold.listed(DEC_1 + hours(5), 30) == ("2026-12", 10)  # the node's reset
    assert fold.listed(DEC_1 + hours(6), 80) == ("2026-12", 60)


def test_the_view_follows_a_node_ahead_of_utc_that_resets_on_the_30th() -> None:
    fold = Fold()
    fold.order()
    assert fold.listed(DEC_1 - hours(4), 1000) == ("2026-11", 1000)
    assert fold.listed(DEC_1 - hours(2), 20) == ("2026-11", 1000)  # its 1st: the reset
    assert fold.listed(DEC_1 + hours(1), 70) == ("2026-12", 50)
