"""The services API WHMCS writes against, over a real event store and the real services view
(SQLite and PostgreSQL): the list with its filters and cursor, the fields of one service,
and the operation under way beside an honest progress."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pytest

from domain.step_chain import derive_username
from domain.task import Task
from gateway.app import create_app
from gateway.credentials import SERVICES, KnownToken, Principal, TokenTable, token_digest
from ops.adapters.command_ledger import StoreLedger
from ops.adapters.sealing import PasswordSealer
from ops.store.database import Database
from ops.store.event_store import EventStore
from ops.views.projection_runner import ProjectionRunner
from ops.views.view_queries import SqlViewQueries
from ops.views.view_store import ViewStore
from projections.catalogue import all_views
from tests.fakes.clock import Clock
from tests.support.gateway import (
    AUTH,
    READER,
    STAFF,
    Client,
    assert_readable_error,
    credentials_for_tests,
    order,
    serving,
)

START = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)


@dataclass
class Api:
    client: Client
    store: EventStore
    clock: Clock
    runner: ProjectionRunner

    def order(self, service_id: int, **changes: Any) -> None:
        """Orders one service a minute after the last, its own domain and user unless given."""
        self.clock.advance(1)
        body = order(
            service_id=service_id,
            domain=changes.pop("domain", f"site{service_id}.example.com"),
            username=changes.pop("username", f"user{service_id}"),
            **changes,
        )
        reply = self.client.post("/v1/services", json=body, headers=AUTH)
        assert reply.status_code == 202, reply.text

    def place(self, service_id: int, web: str, mail: str, dns: list[str]) -> None:
        service = self.store.get_service(str(service_id))
        placement = {"web_server": web, "mail_server": mail, "dns_servers": dns}
        service.place(self.clock.advance(seconds=1), placement)
        self.store.save(service)

    def activate(self, service_id: int) -> None:
        service = self.store.get_service(str(service_id))
        service.mark_active(self.clock.advance(seconds=1))
        self.store.save(service)

    def plan_run(self, service_id: int, run: int, operation: str, steps: list[str]) -> list[Task]:
        tasks = [
            Task.plan(
                service_id=str(service_id),
                run=run,
                step=step,
                role=step.split(".")[0],
                action="do",
                server_id="web1",
                params={},
                depends_on=[],
                now=self.clock.advance(seconds=1),
                operation=operation,
            )
            for step in steps
        ]
        self.store.save(*tasks)
        return tasks

    def run_task(self, task: Task, *, finish: bool) -> None:
        attempt = task.dispatch(self.clock.advance(seconds=1), lease_s=60)
        if finish:
            task.succeed(attempt, self.clock.advance(seconds=1), changed=True, log=[])
        self.store.save(task)

    def get(self, path: str, **params: Any) -> Any:
        self.runner.catch_up()
        reply = self.client.get(path, params=params, headers=AUTH)
        assert reply.status_code == 200, reply.text
        return reply.json()

    def listed(self, **params: Any) -> list[str]:
        return [s["service_id"] for s in self.get("/v1/services", **params)["services"]]


@pytest.fixture
def api(database_url: str) -> Iterator[Api]:
    store, db, clock = EventStore(database_url), Database(database_url), Clock(START)
    views = all_views()
    runner = ProjectionRunner(store, ViewStore(db, views), views)
    app = create_app(
        ledger=StoreLedger(store, PasswordSealer("a-secret-key-only-for-tests")),
        views=SqlViewQueries(db),
        credentials=credentials_for_tests(),
        clock=clock,
    )
    try:
        with serving(app) as client:
            yield Api(client, store, clock, runner)
    finally:
        store.close()
        db.close()


# --- the list -------------------------------------------------------------------------------


def test_the_list_filters_by_status_mode_client_server_and_domain(api: Api) -> None:
    api.order(1, client_id=7, domain="Shop.Example.com")
    api.order(2, client_id=7, mode="unified", domain="blog.example.org")
    api.order(3, client_id=8, domain="myshop.example.net")
    api.order(4, client_id=9, domain="sure.example.com")
    api.place(1, "web1", "mail1", ["dns1", "dns2"])
    api.place(2, "node9", "node9", ["node9"])
    api.place(3, "web2", "mail1", ["dns1"])
    api.activate(1)

    assert api.listed() == ["4", "3", "2", "1"]  # newest order first
    assert api.listed(status="active") == ["1"]
    assert api.listed(status="provisioning") == ["4", "3", "2"]
    assert api.listed(mode="unified") == ["2"]
    assert api.listed(client_id="7") == ["2", "1"]
    assert api.listed(server_id="mail1") == ["3", "1"]  # any role on it
    assert api.listed(server_id="dns2") == ["1"]
    assert api.listed(server_id="node9") == ["2"]
    assert api.listed(server_id="nowhere") == []
    assert api.listed(domain="SHOP") == ["3", "1"]  # case-insensitive substring
    assert api.listed(domain="%") == []  # a LIKE wildcard is a plain character
    assert api.listed(domain="_") == []
    assert api.listed(client_id="7", status="provisioning", server_id="node9") == ["2"]


def test_the_list_pages_with_an_opaque_cursor_until_it_is_null(api: Api) -> None:
    for service_id in range(1, 8):
        api.order(service_id)
    seen: list[str] = []
    params: dict[str, Any] = {"limit": 3}
    pages = 0
    while True:
        page = api.get("/v1/services", **params)
        pages += 1
        seen += [s["service_id"] for s in page["services"]]
        if page["next_cursor"] is None:
            break
        api.order(100 + pages)  # ordered while paging: newer, so before the cursor
        params["cursor"] = page["next_cursor"]
    assert pages == 3
    assert seen == ["7", "6", "5", "4", "3", "2", "1"]
    assert api.get("/v1/services")["next_cursor"] is None  # default limit 100: one page


def test_services_listed_in_the_same_minute_are_ordered_by_id(api: Api) -> None:
    for service_id in (5, 6, 7):
        body = order(service_id=service_id, domain=f"s{service_id}.example", username=None)
        assert api.client.post("/v1/services", json=body, headers=AUTH).status_code == 202
    first = api.get("/v1/services", limit=2)
    assert [s["service_id"] for s in first["services"]] == ["7", "6"]
    rest = api.get("/v1/services", limit=2, cursor=first["next_cursor"])
    assert ([s["service_id"] for s in rest["services"]], rest["next_cursor"]) == (["5"], None)


@pytest.mark.parametrize(
    ("params", "named"),
    [
        ({"status": "running"}, "status"),
        ({"mode": "shared"}, "mode"),
        ({"limit": "0"}, "limit"),
        ({"limit": "many"}, "limit"),
        ({"cursor": "not-a-cursor"}, "cursor"),
        ({"cursor": base64.urlsafe_b64encode(b'{"a": 1}').decode()}, "cursor"),
        ({"domain": "x" * 300}, "domain"),
        ({"client_id": "c" * 300}, "client_id"),
        ({"client_id": "seven eleven"}, "client_id"),
        ({"server_id": "Web_1"}, "server_id"),
    ],
)
def test_bad_list_parameters_are_400_naming_the_parameter(
    api: Api, params: dict[str, str], named: str
) -> None:
    before = api.store.max_notification_id()
    reply = api.client.get("/v1/services", params=params, headers=AUTH)
    assert_readable_error(reply, 400)
    assert named in reply.json()["error"]
    assert api.store.max_notification_id() == before


def test_the_list_is_open_to_whmcs_staff_and_read_credentials_only(api: Api) -> None:
    api.order(1)
    api.runner.catch_up()
    for headers in (AUTH, STAFF, READER):
        assert api.client.get("/v1/services", headers=headers).status_code == 200
    assert_readable_error(api.client.get("/v1/services"), 401)


def test_a_credential_of_one_service_reads_it_but_not_the_list(api: Api, database_url: str) -> None:
    api.order(1)
    api.runner.catch_up()
    token = "customer-1-t0ken-for-tests-0123456789"
    customer = KnownToken(Principal("customer-1", frozenset({SERVICES}), "1"), token_digest(token))
    db = Database(database_url)
    app = create_app(
        ledger=StoreLedger(api.store, PasswordSealer("a-secret-key-only-for-tests")),
        views=SqlViewQueries(db),
        credentials=TokenTable.of([customer]),
        clock=api.clock,
    )
    own = {"Authorization": f"Bearer {token}"}
    try:
        with serving(app) as client:
            assert client.get("/v1/services/1", headers=own).status_code == 200
            assert_readable_error(client.get("/v1/services", headers=own), 403)
    finally:
        db.close()


# --- one service ----------------------------------------------------------------------------


def test_a_service_shows_its_users_plan_client_times_and_servers_per_role(api: Api) -> None:
    api.order(1, client_id=7)
    ordered_at = api.clock.now
    api.order(2, client_id=8, username=None, domain="auto.example.com")
    api.place(1, "web1", "mail1", ["dns1", "dns2"])
    updated_at = api.clock.now
    body = api.get("/v1/services/1")
    assert body["client_id"] == "7"
    assert body["plan"]["package"] == "basic"
    assert body["ordered_at"] == ordered_at.isoformat(timespec="microseconds")
    assert body["updated_at"] == updated_at.isoformat(timespec="microseconds")
    assert body["username"] == "user1"
    assert body["roles"] == {
        "web": {"servers": ["web1"], "username": "user1"},
        "mail": {"servers": ["mail1"], "username": "user1"},
        "dns": {"servers": ["dns1", "dns2"], "username": "user1"},
    }
    assert "password" not in str(body).lower()

    generated = derive_username("auto.example.com", "2")
    unplaced = api.get("/v1/services/2")
    assert unplaced["username"] == generated
    assert unplaced["roles"]["web"] == {"servers": [], "username": generated}
    listed = {s["service_id"]: s for s in api.get("/v1/services")["services"]}
    assert listed["1"] == body  # the list shows each service as the detail does


def test_a_read_before_the_view_catches_up_has_the_same_shape(api: Api) -> None:
    api.order(1, username=None)
    early = api.client.get("/v1/services/1", headers=AUTH)  # the runner has not caught up
    assert early.status_code == 200, early.text
    late = api.get("/v1/services/1")
    assert early.json() == late
    assert late["operation"] == {"action": "deploy", "state": "queued", "done": 0, "total": 0}
    assert late["username"] == derive_username("site1.example.com", "1")


def test_the_store_answers_a_placed_active_service_as_the_view_does(
    api: Api, database_url: str
) -> None:
    api.order(1)
    api.place(1, "web1", "mail1", ["dns1"])
    api.activate(1)
    from_view = api.get("/v1/services/1")
    db = Database(database_url)
    lagging = create_app(  # a view store no runner ever fed: every read falls back
        ledger=StoreLedger(api.store, PasswordSealer("a-secret-key-only-for-tests")),
        views=SqlViewQueries(db, prefix="hw_lagging_"),
        credentials=credentials_for_tests(),
        clock=api.clock,
    )
    try:
        with serving(lagging) as client:
            from_store = client.get("/v1/services/1", headers=AUTH)
    finally:
        db.close()
    assert from_store.status_code == 200, from_store.text
    assert from_store.json() == from_view
    assert from_view["roles"]["dns"] == {"servers": ["dns1"], "username": "user1"}


# --- operations and progress ----------------------------------------------------------------


def test_a_running_suspend_shows_its_operation_and_its_real_progress(api: Api) -> None:
    api.order(1)
    api.place(1, "web1", "mail1", ["dns1"])
    deploy = api.plan_run(1, 1, "deploy", ["web.user", "mail.user"])
    api.run_task(deploy[0], finish=True)
    building = api.get("/v1/services/1")
    assert building["status"] == "provisioning"
    assert building["operation"] == {"action": "deploy", "state": "running", "done": 1, "total": 2}
    assert building["progress"]["percent"] == 50
    api.run_task(deploy[1], finish=True)
    api.activate(1)
    settled = api.get("/v1/services/1")
    assert (settled["status"], settled["operation"]) == ("active", None)
    assert settled["progress"] == {"done": 2, "total": 2, "percent": 100, "current_step": None}

    reply = api.client.post("/v1/services/1/suspend", json={"reason": "unpaid"}, headers=AUTH)
    assert reply.status_code == 202, reply.text
    queued = api.get("/v1/services/1")
    assert queued["operation"] == {"action": "suspend", "state": "queued", "done": 0, "total": 0}
    suspend = api.plan_run(1, 2, "suspend", ["web.suspend", "mail.suspend", "dns.suspend"])
    api.run_task(suspend[0], finish=False)
    running = api.get("/v1/services/1")
    assert running["status"] == "active"
    assert running["operation"] == {"action": "suspend", "state": "running", "done": 0, "total": 3}
    assert running["progress"] == {
        "done": 0,
        "total": 3,
        "percent": 0,
        "current_step": "web.suspend",
    }
    service = api.store.get_service("1")
    service.mark_suspended(api.clock.advance(seconds=1))
    api.store.save(service)
    assert api.get("/v1/services/1")["operation"] is None


def test_a_build_waiting_for_a_node_and_a_failed_suspend_show_as_such(api: Api) -> None:
    api.order(1)
    service = api.store.get_service("1")
    service.wait_for_placement(api.clock.advance(seconds=1), "no server has the mail role")
    api.store.save(service)
    waiting = api.get("/v1/services/1")
    assert waiting["operation"] == {"action": "deploy", "state": "waiting", "done": 0, "total": 0}
    assert waiting["last_error"] == "waiting: no server has the mail role"
    api.place(1, "web1", "mail1", ["dns1"])
    assert api.get("/v1/services/1")["operation"]["state"] == "queued"
    api.activate(1)

    reply = api.client.post("/v1/services/1/suspend", json={"reason": "unpaid"}, headers=AUTH)
    assert reply.status_code == 202, reply.text
    (task,) = api.plan_run(1, 2, "suspend", ["web.suspend"])
    api.run_task(task, finish=False)
    assert api.get("/v1/services/1")["operation"]["state"] == "running"
    service = api.store.get_service("1")
    service.mark_operation_failed(api.clock.advance(seconds=1), "suspend", "web1 is away")
    api.store.save(service)
    failed = api.get("/v1/services/1")
    assert (failed["status"], failed["operation"]) == ("active", None)
    assert failed["last_error"] == "suspend: web1 is away"
    assert failed["progress"]["percent"] == 0


def test_a_suspend_asked_for_during_the_build_queues_behind_it(api: Api) -> None:
    api.order(1)
    api.place(1, "web1", "mail1", ["dns1"])
    (build,) = api.plan_run(1, 1, "deploy", ["web.user"])
    api.run_task(build, finish=False)
    reply = api.client.post("/v1/services/1/suspend", json={"reason": "unpaid"}, headers=AUTH)
    assert reply.status_code == 202, reply.text
    building = api.get("/v1/services/1")
    assert building["operation"] == {"action": "deploy", "state": "running", "done": 0, "total": 1}
    build.succeed(build.attempt, api.clock.advance(seconds=1), changed=True, log=[])
    api.store.save(build)
    api.activate(1)
    built = api.get("/v1/services/1")
    assert built["status"] == "active"
    assert built["operation"] == {"action": "suspend", "state": "queued", "done": 0, "total": 0}
    assert built["progress"]["percent"] == 100  # the build's tasks, all done
    api.plan_run(1, 2, "suspend", ["web.suspend"])
    assert api.get("/v1/services/1")["operation"] == {
        "action": "suspend",
        "state": "running",
        "done": 0,
        "total": 1,
    }
