"""The WHMCS gateway over a real event store (SQLite file) and a fake of the views.

Every refusal must be a 4xx JSON error with a readable message and must record nothing: the
store's notification id is compared before and after each call.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import httpx
import pytest

from domain.commands import OrderService
from domain.task_bulk import ChangeTasksInBulk
from gateway.app import create_app
from gateway.ports import CommandLedger, ViewQueries
from ops.adapters.command_ledger import StoreLedger
from ops.adapters.sealing import PasswordSealer, SealError
from ops.store.event_store import EventStore
from tests.fakes.clock import Clock
from tests.fakes.view_queries import FakeViews
from tests.support.gateway import (
    AUTH,
    PASSWORD,
    START,
    TOKEN,
    Client,
    assert_readable_error,
    credentials_for_tests,
    order,
    serving,
)


class BrokenLedger:
    """A ledger whose store is down, or whose every call fails in an unexpected way."""

    def order_service(self, command: OrderService) -> bool:
        raise RuntimeError(f"boom with internals: {command.password}")

    def request(self, command: object) -> bool:
        raise RuntimeError("boom")

    def events_of(self, service_id: str, as_of: datetime | None) -> list[dict[str, Any]]:
        raise RuntimeError("boom")

    def ping(self) -> None:
        raise OSError("database file is gone: /secret/path")

    def recorded_service(self, service_id: str) -> dict[str, Any] | None:
        raise RuntimeError("boom")

    def retry_task(self, task_id: str, now: datetime, actor: str) -> bool:
        raise RuntimeError("boom")

    def retry_failed_deploy(
        self, service_id: str, task_ids: Sequence[str], now: datetime, actor: str
    ) -> list[str]:
        raise RuntimeError("boom")

    def cancel_task(self, task_id: str, now: datetime, actor: str) -> bool:
        raise RuntimeError("boom")

    def change_tasks(self, command: ChangeTasksInBulk, task_ids: Sequence[str]) -> list[str]:
        raise RuntimeError("boom")


@pytest.fixture
def store(sqlite_url: str) -> Iterator[EventStore]:
    event_store = EventStore(sqlite_url)
    yield event_store
    event_store.close()


@pytest.fixture
def sealer() -> PasswordSealer:
    return PasswordSealer("a-secret-key-only-for-tests")


@pytest.fixture
def clock() -> Clock:
    return Clock(START)


@pytest.fixture
def views() -> FakeViews:
    return FakeViews()


@pytest.fixture
def client(
    store: EventStore, sealer: PasswordSealer, clock: Clock, views: FakeViews
) -> Iterator[Client]:
    app = create_app(
        ledger=StoreLedger(store, sealer),
        views=views,
        credentials=credentials_for_tests(),
        clock=clock,
    )
    with serving(app) as test_client:
        yield test_client


def place(client: Client, **changes: Any) -> httpx.Response:
    return client.post("/v1/services", json=order(**changes), headers=AUTH)


def topics(client: Client, service_id: str = "1001", **params: str) -> list[str]:
    reply = client.get(f"/v1/services/{service_id}/events", params=params, headers=AUTH)
    assert reply.status_code == 200, reply.text
    return [event["topic"] for event in reply.json()["events"]]


# --- orders ---------------------------------------------------------------------------------


def test_an_order_is_recorded_and_answered_202(client: Client, store: EventStore) -> None:
    before = store.max_notification_id()
    reply = place(client)
    assert reply.status_code == 202
    assert reply.json() == {"result": "success", "service_id": "1001", "status": "provisioning"}
    # Service.Ordered, and the claims on its domain and its username
    assert store.max_notification_id() == before + 3
    assert topics(client) == ["Service.Ordered"]
    event = client.get("/v1/services/1001/events", headers=AUTH).json()["events"][0]
    assert event["data"]["domain"] == "shop.example.com"
    assert event["timestamp"] == START.isoformat()


def test_the_same_order_again_is_harmless_and_records_nothing(
    client: Client, store: EventStore
) -> None:
    assert place(client).status_code == 202
    count = store.max_notification_id()
    reply = place(client)
    assert reply.status_code == 202
    assert reply.json()["result"] == "success"
    assert store.max_notification_id() == count
    assert topics(client) == ["Service.Ordered"]


def test_the_same_service_id_with_another_domain_is_a_conflict(
    client: Client, store: EventStore
) -> None:
    place(client)
    count = store.max_notification_id()
    reply = place(client, domain="other.example.com")
    assert_readable_error(reply, 409)
    assert store.max_notification_id() == count


SHELL_BREAKERS = ["$(reboot)", "a;b", "a`id`b", "`reboot`", "a\nb", "a b", "a|b", "a&&b"]

BAD_BODIES: list[tuple[str, Any]] = [
    ("unknown mode", order(mode="shared")),
    ("missing domain", {k: v for k, v in order().items() if k != "domain"}),
    ("domain with a space", order(domain="exa mple.com")),
    ("domain starting with a hyphen", order(domain="-a.com")),
    ("300-character domain", order(domain=("a" * 60 + ".") * 4 + "a" * 56 + ".com")),
    ("300-character label", order(domain="a" * 300 + ".com")),
    ("domain with a shell command", order(domain="a.com; rm -rf /")),
    ("path traversal domain", order(domain="../etc")),
    ("single-label domain", order(domain="localhost")),
    ("domain as a number", order(domain=42)),
    ("300-character username", order(username="a" * 300)),
    ("reserved username", order(username="root")),
    ("unknown field", order(ssh_key="AAAA")),
    ("plan with a bool as a quota", order(plan={"disk_mb": True})),
    ("plan with an unknown field", order(plan={"disk_gb": 1})),
    ("short password", order(password="short")),
    ("password with a newline", order(password="abcdefgh\nijk")),
    ("service_id with a slash", order(service_id="../etc")),
    ("negative client id", order(client_id=-1)),
    ("vanity without a label", order(mode="vanity", domain="shop.example.net")),
    ("vanity label not in the domain", order(mode="vanity", label="shop", domain="x.example.net")),
    ("label on a split service", order(label="shop")),
    ("command_id with a shell command", order(command_id="$(reboot)")),
]
BAD_BODIES += [(f"username {s!r}", order(username=s)) for s in SHELL_BREAKERS]
BAD_BODIES += [
    (f"vanity label {s!r}", order(mode="vanity", label=s, domain="shop.example.net"))
    for s in SHELL_BREAKERS
]


@pytest.mark.parametrize(("case", "body"), BAD_BODIES, ids=[case for case, _ in BAD_BODIES])
def test_an_invalid_order_is_refused_with_a_readable_error_and_nothing_recorded(
    client: Client, store: EventStore, case: str, body: Any
) -> None:
    place(client, service_id=5)  # something in the store, so "unchanged" is not just "empty"
    count = store.max_notification_id()
    reply = client.post("/v1/services", json=body, headers=AUTH)
    assert_readable_error(reply, 422)
    assert store.max_notification_id() == count


UNREADABLE: list[tuple[str, bytes, str]] = [
    ("malformed JSON", b'{"service_id": 1,', "application/json"),
    ("trailing garbage", b'{"service_id": 1} x', "application/json"),
    ("a JSON list", b"[1, 2]", "application/json"),
    ("a JSON string", b'"hello"', "application/json"),
    ("JSON null", b"null", "application/json"),
    ("an empty body", b"", "application/json"),
    ("NaN", b'{"service_id": NaN}', "application/json"),
    ("not UTF-8", b'{"domain": "\xff"}', "application/json"),
    ("a form", b"service_id=1&mode=split", "application/x-www-form-urlencoded"),
]


@pytest.mark.parametrize(
    ("case", "raw", "content_type"), UNREADABLE, ids=[case for case, _, _ in UNREADABLE]
)
def test_an_unreadable_body_is_a_400_and_nothing_recorded(
    client: Client, store: EventStore, case: str, raw: bytes, content_type: str
) -> None:
    count = store.max_notification_id()
    reply = client.post("/v1/services", content=raw, headers={**AUTH, "Content-Type": content_type})
    assert_readable_error(reply, 400)
    assert store.max_notification_id() == count


def test_a_body_over_the_limit_is_refused(client: Client, store: EventStore) -> None:
    raw = b'{"pad": "' + b"x" * 70_000 + b'"}'
    reply = client.post(
        "/v1/services", content=raw, headers={**AUTH, "Content-Type": "application/json"}
    )
    assert_readable_error(reply, 413)
    assert store.max_notification_id() == 0


# --- authentication -------------------------------------------------------------------------

BAD_AUTH: list[tuple[str, dict[str, str]]] = [
    ("missing token", {}),
    ("wrong token", {"Authorization": "Bearer not-the-token"}),
    ("token prefix", {"Authorization": f"Bearer {TOKEN[:-1]}"}),
    ("empty bearer", {"Authorization": "Bearer "}),
    ("basic scheme", {"Authorization": f"Basic {TOKEN}"}),
    ("bare token", {"Authorization": TOKEN}),
]


@pytest.mark.parametrize(("case", "headers"), BAD_AUTH, ids=[case for case, _ in BAD_AUTH])
def test_a_call_without_the_right_token_is_401_and_records_nothing(
    client: Client, store: EventStore, case: str, headers: dict[str, str]
) -> None:
    reply = client.post("/v1/services", json=order(), headers=headers)
    assert_readable_error(reply, 401)
    assert reply.headers["www-authenticate"] == "Bearer"
    assert store.max_notification_id() == 0
    for path in ("/v1/services/1001", "/v1/services/1001/events", "/v1/oplog", "/v1/nowhere"):
        assert_readable_error(client.get(path, headers=headers), 401)
    assert_readable_error(client.post("/v1/services/1001/suspend", headers=headers), 401)


def test_the_bearer_scheme_is_case_insensitive(client: Client) -> None:
    reply = client.post("/v1/services", json=order(), headers={"Authorization": f"bearer {TOKEN}"})
    assert reply.status_code == 202


def test_healthz_needs_no_token(client: Client) -> None:
    reply = client.get("/healthz")
    assert (reply.status_code, reply.json()) == (200, {"status": "ok"})


class DeadLetterCounts:
    """The broker's dead-letter counts as the gauge answers them (None: it did not answer)."""

    def __init__(self, counts: dict[str, int] | None) -> None:
        self._counts = counts

    async def counts(self) -> dict[str, int] | None:
        return self._counts


@pytest.mark.parametrize(
    ("counts", "body"),
    [
        ({"pipeline.dead": 2, "tickets.dead": 0}, {"pipeline.dead": 2, "tickets.dead": 0}),
        (None, None),
    ],
)
def test_healthz_shows_the_dead_letters_when_the_broker_answers(
    store: EventStore,
    sealer: PasswordSealer,
    views: FakeViews,
    clock: Clock,
    counts: dict[str, int] | None,
    body: dict[str, int] | None,
) -> None:
    app = create_app(
        ledger=StoreLedger(store, sealer),
        views=views,
        credentials=credentials_for_tests(),
        clock=clock,
        dead_letters=DeadLetterCounts(counts),
    )
    with serving(app) as test_client:
        reply = test_client.get("/healthz")
    expected: dict[str, Any] = {"status": "ok"}
    if body is not None:
        expected["dead_letters"] = body
    assert (reply.status_code, reply.json()) == (200, expected)


def test_healthz_is_503_when_the_store_is_down(views: FakeViews, clock: Clock) -> None:
    app = create_app(
        ledger=BrokenLedger(), views=views, credentials=credentials_for_tests(), clock=clock
    )
    with serving(app) as test_client:
        reply = test_client.get("/healthz")
    assert reply.status_code == 503
    assert "error" in reply.json()
    assert "/secret/path" not in reply.text


# --- lifecycle ------------------------------------------------------------------------------


def test_lifecycle_calls_are_recorded_and_answered_202(client: Client, store: EventStore) -> None:
    place(client)
    calls: list[tuple[str, dict[str, Any] | None]] = [
        ("suspend", {"reason": "unpaid invoice"}),
        ("unsuspend", None),
        ("verify-repair", {}),
        ("redeploy", None),
        ("factory-reset", None),
        ("change-plan", {"plan": {"package": "pro", "disk_mb": 5000}}),
        ("sync-usage", None),
        ("terminate", {"force": True}),
    ]
    for action, body in calls:
        count = store.max_notification_id()
        reply = client.post(f"/v1/services/1001/{action}", json=body, headers=AUTH)
        assert (reply.status_code, reply.json()) == (202, {"result": "success"}), action
        assert store.max_notification_id() == count + 1, action
    assert topics(client) == [
        "Service.Ordered",
        "Service.SuspendRequested",
        "Service.UnsuspendRequested",
        "Service.VerifyRepairRequested",
        "Service.RedeployRequested",
        "Service.FactoryResetRequested",
        "Service.PlanChangeRequested",
        "Service.UsageSyncRequested",
        "Service.TerminateRequested",
    ]


def test_a_lifecycle_call_with_no_body_at_all(client: Client) -> None:
    place(client)
    reply = client.post("/v1/services/1001/sync-usage", headers=AUTH)
    assert reply.status_code == 202


def test_suspend_twice_records_one_event(client: Client, store: EventStore) -> None:
    place(client)
    assert client.post("/v1/services/1001/suspend", headers=AUTH).status_code == 202
    count = store.max_notification_id()
    reply = client.post("/v1/services/1001/suspend", headers=AUTH)
    assert (reply.status_code, reply.json()) == (202, {"result": "success"})
    assert store.max_notification_id() == count
    assert topics(client).count("Service.SuspendRequested") == 1


def test_redeploy_after_terminate_is_a_conflict(client: Client, store: EventStore) -> None:
    place(client)
    assert client.post("/v1/services/1001/terminate", headers=AUTH).status_code == 202
    count = store.max_notification_id()
    reply = client.post("/v1/services/1001/redeploy", headers=AUTH)
    assert_readable_error(reply, 409)
    assert "terminating" in reply.json()["error"]
    assert store.max_notification_id() == count


def test_an_unknown_service_is_404_and_records_nothing(client: Client, store: EventStore) -> None:
    place(client)
    count = store.max_notification_id()
    for action in ("suspend", "terminate", "change-plan"):
        body = {"plan": {"package": "pro"}} if action == "change-plan" else None
        reply = client.post(f"/v1/services/9999/{action}", json=body, headers=AUTH)
        assert_readable_error(reply, 404)
    assert_readable_error(client.get("/v1/services/9999/events", headers=AUTH), 404)
    assert store.max_notification_id() == count


def test_an_unknown_action_is_404(client: Client, store: EventStore) -> None:
    place(client)
    count = store.max_notification_id()
    for action in ("reboot", "events", "Suspend", "delete"):
        assert_readable_error(client.post(f"/v1/services/1001/{action}", headers=AUTH), 404)
    assert store.max_notification_id() == count


BAD_LIFECYCLE: list[tuple[str, str, Any]] = [
    ("plan is not an object", "change-plan", {"plan": "pro"}),
    ("plan is missing", "change-plan", {}),
    ("a bool as a quota", "change-plan", {"plan": {"disk_mb": False}}),
    ("a negative quota", "change-plan", {"plan": {"disk_mb": -1}}),
    ("a quota over its bound", "change-plan", {"plan": {"disk_mb": 10**12}}),
    ("an unknown plan field", "change-plan", {"plan": {"inodes": 5}}),
    ("a package with a shell command", "change-plan", {"plan": {"package": "a;reboot"}}),
    ("force as a string", "terminate", {"force": "yes"}),
    ("a field the action does not take", "redeploy", {"force": True}),
    ("an unknown field", "suspend", {"why": "x"}),
    ("a reason too long", "suspend", {"reason": "x" * 501}),
]


@pytest.mark.parametrize(
    ("case", "action", "body"), BAD_LIFECYCLE, ids=[case for case, _, _ in BAD_LIFECYCLE]
)
def test_an_invalid_lifecycle_call_is_refused_and_records_nothing(
    client: Client, store: EventStore, case: str, action: str, body: Any
) -> None:
    place(client)
    count = store.max_notification_id()
    reply = client.post(f"/v1/services/1001/{action}", json=body, headers=AUTH)
    assert_readable_error(reply, 422)
    assert store.max_notification_id() == count


def test_a_lifecycle_body_that_is_not_an_object_is_400(client: Client, store: EventStore) -> None:
    place(client)
    count = store.max_notification_id()
    for raw in (b"[]", b"{", b"42"):
        reply = client.post(
            "/v1/services/1001/suspend",
            content=raw,
            headers={**AUTH, "Content-Type": "application/json"},
        )
        assert_readable_error(reply, 400)
    assert store.max_notification_id() == count


def test_the_idempotency_key_makes_a_retried_call_record_once(
    client: Client, store: EventStore
) -> None:
    place(client)
    headers = {**AUTH, "Idempotency-Key": "whmcs-req-77"}
    for _ in range(3):
        assert client.post("/v1/services/1001/sync-usage", headers=headers).status_code == 202
    assert topics(client).count("Service.UsageSyncRequested") == 1
    reply = client.post("/v1/services/1001/sync-usage", headers=AUTH)
    assert reply.status_code == 202
    assert topics(client).count("Service.UsageSyncRequested") == 2
    count = store.max_notification_id()
    bad = {**AUTH, "Idempotency-Key": "$(reboot)"}
    assert_readable_error(client.post("/v1/services/1001/sync-usage", headers=bad), 422)
    assert store.max_notification_id() == count


# --- reads ----------------------------------------------------------------------------------


def test_events_as_of_a_time_show_only_what_was_recorded_by_then(
    client: Client, clock: Clock
) -> None:
    place(client)
    t_suspend = clock.advance(10)
    client.post("/v1/services/1001/suspend", headers=AUTH)
    clock.advance(10)
    client.post("/v1/services/1001/unsuspend", headers=AUTH)
    assert topics(client, as_of=START.isoformat()) == ["Service.Ordered"]
    assert topics(client, as_of=(t_suspend + timedelta(minutes=1)).isoformat()) == [
        "Service.Ordered",
        "Service.SuspendRequested",
    ]
    naive_utc = t_suspend.replace(tzinfo=None).isoformat()
    assert topics(client, as_of=naive_utc) == ["Service.Ordered", "Service.SuspendRequested"]
    in_paris = t_suspend.astimezone(timezone(timedelta(hours=1))).isoformat()
    assert topics(client, as_of=in_paris) == ["Service.Ordered", "Service.SuspendRequested"]
    assert topics(client, as_of=(START - timedelta(seconds=1)).isoformat()) == []
    assert len(topics(client)) == 3


def test_an_unparseable_as_of_is_400(client: Client) -> None:
    place(client)
    for bad in ("yesterday", "2026-13-01", "1700000000"):
        reply = client.get("/v1/services/1001/events", params={"as_of": bad}, headers=AUTH)
        assert_readable_error(reply, 400)


def test_the_password_is_never_recorded_in_clear(
    client: Client, store: EventStore, sealer: PasswordSealer, sqlite_url: str
) -> None:
    assert place(client).status_code == 202
    events_reply = client.get("/v1/services/1001/events", headers=AUTH)
    assert PASSWORD not in events_reply.text
    assert "password" not in events_reply.text
    for notification in store.notifications(0, 100):
        assert PASSWORD.encode() not in notification.state
        assert PASSWORD not in store.envelope(notification).decode()
    sealed = store.get_service("1001").password_sealed
    assert (
        sealed is not None and sealed.startswith(f"v2:{sealer.key_id}:") and PASSWORD not in sealed
    )
    assert sealer.unseal(sealed) == PASSWORD
    database = Path(sqlite_url.removeprefix("sqlite:///"))
    for path in database.parent.glob(database.name + "*"):  # the file, its -wal and -shm
        assert PASSWORD.encode() not in path.read_bytes()


def test_a_service_reads_its_status_and_progress_from_the_view(
    client: Client, views: FakeViews
) -> None:
    views.services["1001"] = {
        "service_id": "1001",
        "mode": "split",
        "domain": "shop.example.com",
        "status": "provisioning",
        "done": 2,
        "total": 3,
        "current_step": "mail.add_user",
    }
    reply = client.get("/v1/services/1001", headers=AUTH)
    assert reply.status_code == 200
    assert reply.json() == {
        "service_id": "1001",
        "client_id": None,
        "mode": "split",
        "domain": "shop.example.com",
        "label": None,
        "status": "provisioning",
        "plan": None,
        "username": None,
        "roles": {role: {"servers": [], "username": None} for role in ("web", "mail", "dns")},
        "ordered_at": None,
        "updated_at": None,
        "operation": None,
        "progress": {"done": 2, "total": 3, "percent": 66, "current_step": "mail.add_user"},
        "last_error": None,
        "leftovers": [],
    }


@pytest.mark.parametrize(
    ("status", "done", "total", "percent"),
    [
        ("provisioning", 0, 0, 0),
        ("active", 0, 0, 0),  # no task known: nothing to show done
        ("active", 1, 4, 25),  # a suspend under way: active, 1 of its 4 tasks done
        ("deploy_failed", 1, 4, 25),
        ("provisioning", 5, 4, 100),
    ],
)
def test_progress_percent(
    client: Client, views: FakeViews, status: str, done: int, total: int, percent: int
) -> None:
    views.services["7"] = {
        "service_id": "7",
        "mode": "unified",
        "domain": "a.example",
        "status": status,
        "progress": {"done": done, "total": total, "current_step": None},
    }
    progress = client.get("/v1/services/7", headers=AUTH).json()["progress"]
    assert progress["percent"] == percent


def test_an_unknown_service_read_is_404(client: Client) -> None:
    assert_readable_error(client.get("/v1/services/1001", headers=AUTH), 404)


def test_a_service_read_right_after_its_order_answers_it_before_the_view_catches_up(
    client: Client, views: FakeViews
) -> None:
    """Read your writes: the views (here: never) lag the store; the 202's service is there."""
    assert place(client).status_code == 202
    reply = client.get("/v1/services/1001", headers=AUTH)
    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert (body["service_id"], body["status"], body["mode"]) == ("1001", "provisioning", "split")
    assert body["domain"] == "shop.example.com"
    assert body["progress"] == {"done": 0, "total": 0, "percent": 0, "current_step": None}


def test_the_oplog_passes_its_filters_to_the_view(client: Client, views: FakeViews) -> None:
    views.oplog_entries = [{"id": 1, "at": START, "service_id": "1001", "what": "ordered"}]
    reply = client.get("/v1/oplog", headers=AUTH)
    assert reply.status_code == 200
    assert reply.json() == {
        "entries": [{"id": 1, "at": START.isoformat(), "service_id": "1001", "what": "ordered"}]
    }
    client.get(
        "/v1/oplog",
        params={"service_id": "1001", "since": "2026-03-01T08:00:00", "limit": "5000"},
        headers=AUTH,
    )
    assert views.oplog_calls == [
        {"service_id": None, "since": None, "limit": 200},
        {"service_id": "1001", "since": datetime(2026, 3, 1, 8, tzinfo=UTC), "limit": 1000},
    ]


@pytest.mark.parametrize(
    "params", [{"limit": "0"}, {"limit": "-3"}, {"limit": "ten"}, {"since": "last week"}]
)
def test_bad_oplog_parameters_are_400(client: Client, params: dict[str, str]) -> None:
    assert_readable_error(client.get("/v1/oplog", params=params, headers=AUTH), 400)


def test_unknown_routes_and_methods_answer_json_errors(client: Client) -> None:
    assert_readable_error(client.get("/v1/nowhere", headers=AUTH), 404)
    assert_readable_error(client.delete("/v1/services/1001", headers=AUTH), 405)


# --- failures -------------------------------------------------------------------------------


def test_an_unexpected_error_is_a_generic_500_that_leaks_nothing(
    views: FakeViews, clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    ledger: CommandLedger = BrokenLedger()
    app = create_app(ledger=ledger, views=views, credentials=credentials_for_tests(), clock=clock)
    with caplog.at_level(logging.DEBUG), serving(app) as c:
        reply = c.post("/v1/services", json=order(), headers=AUTH)
        events_reply = c.get("/v1/services/1001/events", headers=AUTH)
    assert reply.status_code == 500
    assert reply.json() == {"result": "error", "error": "internal error"}
    assert events_reply.status_code == 500
    assert "boom" not in events_reply.text
    logged = caplog.text
    assert "RuntimeError" in logged
    for secret in (PASSWORD, "internals", TOKEN):
        assert secret not in logged
        assert secret not in reply.text


def test_the_fakes_satisfy_the_ports() -> None:
    views: ViewQueries = FakeViews()
    ledger: CommandLedger = BrokenLedger()
    assert views is not None and ledger is not None


# --- sealing --------------------------------------------------------------------------------


def test_sealing_round_trips_with_a_fresh_nonce_each_time(sealer: PasswordSealer) -> None:
    first, second = sealer.seal(PASSWORD), sealer.seal(PASSWORD)
    assert first != second
    assert first.startswith(f"v2:{sealer.key_id}:") and len(first) < 100
    assert sealer.unseal(first) == sealer.unseal(second) == PASSWORD
    assert "a-secret-key-only-for-tests" not in repr(sealer)


@pytest.mark.parametrize("text", ["", "v1:", "v2:abcd", "v1:!!!", "v1:c2hvcnQ=", "plain"])
def test_unsealing_garbage_raises(sealer: PasswordSealer, text: str) -> None:
    with pytest.raises(SealError):
        sealer.unseal(text)


def test_a_sealed_password_does_not_open_with_another_key(sealer: PasswordSealer) -> None:
    sealed = sealer.seal(PASSWORD)
    with pytest.raises(SealError):
        PasswordSealer("another-key").unseal(sealed)
    tampered = sealed[:-2] + ("A" if sealed[-2] != "A" else "B") + sealed[-1]
    with pytest.raises(SealError):
        sealer.unseal(tampered)


def test_a_service_id_with_a_trailing_newline_is_refused(client: Client, store: EventStore) -> None:
    reply = place(client, service_id="1001\n")
    assert_readable_error(reply, 422)
    assert store.max_notification_id() == 0
