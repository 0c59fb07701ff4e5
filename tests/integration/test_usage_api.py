"""The usage routes over the gateway with fake views: a customer's credential sees its own
service's usage and bill and nothing else (no list, no other service, no refresh); every
tenant's bill is read once per view position; a refresh names only registered nodes and
ordered services, checked before anything is asked."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any, cast

import pytest

from gateway.app import create_app
from gateway.credentials import KnownToken, Principal, TokenTable, token_digest
from gateway.ports import CommandLedger, ServerBook
from tests.fakes.usage_views import FakeUsageRefresh, FakeUsageViews
from tests.fakes.view_queries import FakeViews
from tests.support.gateway import AUTH, STAFF, Client, credentials_for_tests

CUSTOMER_TOKEN = "customer-t0ken-of-service-1001-0123456789"
CUSTOMER = {"Authorization": f"Bearer {CUSTOMER_TOKEN}"}


def row(service_id: str, domain: str, disk: int) -> dict[str, Any]:
    return {
        "service_id": service_id,
        "client_id": "7",
        "mode": "unified",
        "domain": domain,
        "username": f"u{service_id}",
        "status": "active",
        "plan": {"disk_mb": 1000},
        "disk_mb": disk,
        "bandwidth_mb": 5,
        "bandwidth_billed_mb": 9,
        "web_domains": 1,
        "dns_domains": 1,
        "mail_domains": 1,
        "mail_accounts": 2,
        "databases": 1,
        "billing_month": "2026-12",
        "collected_at": "2026-12-03T10:00:00.000000+00:00",
        "stale": False,
        "stale_since": None,
    }


class Servers:
    def listing(self) -> list[dict[str, Any]]:
        return [{"server_id": "web1"}, {"server_id": "mail1"}]


@pytest.fixture
def api() -> Iterator[tuple[Client, FakeUsageViews, FakeUsageRefresh]]:
    views = FakeUsageViews([row("1001", "a.example", 150), row("1002", "b.example", 90)])
    refresh = FakeUsageRefresh({"1001": ["web1"], "1002": ["web1", "mail1"]})
    base = credentials_for_tests()
    customer = KnownToken(
        Principal("customer", frozenset({"services"}), service_id="1001"),
        token_digest(CUSTOMER_TOKEN),
    )
    app = create_app(
        ledger=cast(CommandLedger, object()),
        views=FakeViews(),
        credentials=TokenTable.of([*base.entries, customer]),
        clock=lambda: datetime(2026, 12, 3, 10, 1, tzinfo=UTC),
        servers=cast(ServerBook, Servers()),
        usage=views,
        usage_refresh=refresh,
    )
    client = Client(app)
    try:
        yield client, views, refresh
    finally:
        client.close()


def test_a_customer_sees_only_its_own_services_usage_and_bill(api: Any) -> None:
    client, _, refresh = api
    own = client.get("/v1/services/1001/usage", headers=CUSTOMER)
    assert own.status_code == 200 and own.json()["gauges"]["disk_mb"]["used"] == 150
    assert own.json()["gauges"]["disk_mb"]["percent"] == 15.0
    assert client.get("/v1/services/1001/billing", headers=CUSTOMER).status_code == 200
    for path in (
        "/v1/services/1002/usage",
        "/v1/services/1002/billing",
        "/v1/usage",
        "/v1/billing/usage",
    ):
        assert client.get(path, headers=CUSTOMER).status_code == 403, path
    assert client.post("/v1/usage/refresh", headers=CUSTOMER, json={}).status_code == 403
    assert refresh.asked == []


def test_every_tenants_bill_is_read_once_per_view_position_and_equals_the_gauges(api: Any) -> None:
    client, views, _ = api
    first = client.get("/v1/billing/usage", headers=AUTH).json()
    again = client.get("/v1/billing/usage", headers=AUTH).json()
    assert first == again and views.billing_reads == 1
    gauges = client.get("/v1/services/1001/usage", headers=AUTH).json()["gauges"]
    assert first["tenants"]["a.example"]["metrics"] == {k: g["used"] for k, g in gauges.items()}
    views.rows["1001"] = row("1001", "a.example", 151)
    views.at = 2  # the view moved on
    assert (
        client.get("/v1/billing/usage", headers=AUTH).json()["tenants"]["a.example"]["metrics"][
            "disk_mb"
        ]
        == 151
    )
    by_user = client.get("/v1/billing/usage?key=username", headers=AUTH).json()
    assert set(by_user["tenants"]) == {"u1001", "u1002"} and views.billing_reads == 3


def test_usage_pages_sort_by_a_figure(api: Any) -> None:
    client, _, _ = api
    body = client.get("/v1/usage?sort=disk_mb&order=desc&limit=1", headers=STAFF).json()
    assert [s["service_id"] for s in body["services"]] == ["1001"] and body["next_offset"] == 1
    second = client.get("/v1/usage?sort=disk_mb&order=desc&limit=1&offset=1", headers=STAFF)
    assert [s["service_id"] for s in second.json()["services"]] == ["1002"]


def test_a_refresh_is_checked_whole_before_any_node_is_asked(api: Any) -> None:
    client, _, refresh = api
    for body, status in (
        ({"server_id": "web9"}, 404),
        ({"server_id": "WEB 1"}, 422),
        ({"service_ids": ["1001", "4040"]}, 404),
        ({"service_ids": ["1001", "no way"]}, 422),
        ({"service_ids": "1001"}, 422),
        ([], 400),
    ):
        reply = client.post("/v1/usage/refresh", headers=STAFF, json=body)
        assert reply.status_code == status, (body, reply.text)
    assert refresh.asked == []
    reply = client.post("/v1/usage/refresh", headers=STAFF, json={"service_ids": ["1002", 1001]})
    assert reply.status_code == 202 and reply.json()["servers"] == {
        "web1": "queued",
        "mail1": "queued",
    }
    assert client.post("/v1/usage/refresh", headers=STAFF).json()["servers"] == {
        "web1": "queued",
        "mail1": "queued",
    }
    assert refresh.asked[0] == (["web1", "mail1"], "refresh:staff")


def test_after_the_month_turns_a_month_metric_reads_0_until_the_months_first_listing() -> None:
    views = FakeUsageViews([row("1001", "a.example", 150)])  # billed 9 MB in 2026-12
    now = [datetime(2026, 12, 31, 23, 59, tzinfo=UTC)]
    app = create_app(
        ledger=cast(CommandLedger, object()),
        views=FakeViews(),
        credentials=credentials_for_tests(),
        clock=lambda: now[0],
        servers=cast(ServerBook, Servers()),
        usage=views,
        usage_refresh=FakeUsageRefresh({}),
    )
    client = Client(app)
    try:

        def read() -> list[tuple[Any, ...]]:
            tenant = client.get("/v1/billing/usage", headers=AUTH).json()["tenants"]["a.example"]
            bill = client.get("/v1/services/1001/billing", headers=AUTH).json()
            usage = client.get("/v1/services/1001/usage", headers=AUTH).json()
            listed = client.get("/v1/usage", headers=STAFF).json()["services"][0]
            return [
                (tenant["billing_month"], tenant["metrics"]["bandwidth_mb"]),
                (bill["billing_month"], bill["metrics"]["bandwidth_mb"]),
                (usage["billing_month"], usage["gauges"]["bandwidth_mb"]["used"]),
                ("", listed["metrics"]["bandwidth_mb"]),
            ]

        assert read() == [("2026-12", 9)] * 3 + [("", 9)]
        now[0] = datetime(2027, 1, 1, 0, 1, tzinfo=UTC)  # no listing of January yet
        assert read() == [("2027-01", 0)] * 3 + [("", 0)]
        disk = client.get("/v1/services/1001/billing", headers=AUTH).json()["metrics"]["disk_mb"]
        assert disk == 150  # a snapshot metric is the value now, whatever the month
    finally:
        client.close()


def test_as_of_shows_the_limits_of_the_plan_in_force_then(api: Any) -> None:
    client, views, _ = api
    then = {**row("1001", "a.example", 150), "plan": {"disk_mb": 300}}
    views.past["1001"] = {"service_id": "1001", "at": then["collected_at"], "totals": then}
    past = client.get("/v1/services/1001/usage?as_of=2026-12-03T10:00:30Z", headers=AUTH).json()
    assert past["gauges"]["disk_mb"] == {"used": 150, "unit": "MB", "limit": 300, "percent": 50.0}
    now = client.get("/v1/services/1001/usage", headers=AUTH).json()["gauges"]["disk_mb"]
    assert (now["limit"], now["percent"]) == (1000, 15.0)
