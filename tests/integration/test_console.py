"""The staff console (``/admin``) over a real app: the event store on SQLite, the real
StoreLedger, settings book, server registry and views projected from the store.

Sign-in and sessions, the CSRF check (a refused post records nothing: the store's last
notification id is compared), read-only staff, the bulk controls changing the queue, the
settings form's refusal with the API's own message, and hostile text staying text.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from starlette.applications import Starlette
from starlette.routing import Route

from domain.retry_policy import RetryPolicy
from domain.task import Task
from gateway.app import create_app
from gateway.credentials import READ, Principal, TokenTable, known_token
from gateway.screens.console_session import COOKIE
from ops.adapters.command_ledger import StoreLedger
from ops.adapters.sealing import PasswordSealer
from ops.adapters.server_registry import ServerRegistry
from ops.adapters.settings_book import StoreSettingsBook, runtime_defaults
from ops.bootstrap import System
from ops.settings import Settings
from ops.store.database import Database
from ops.store.event_store import EventStore
from ops.views.live_changes import SqlLiveChanges
from ops.views.projection_runner import ProjectionRunner
from ops.views.view_queries import SqlViewQueries
from ops.views.view_store import ViewStore
from projections.catalogue import all_views
from tests.fakes.clock import Clock
from tests.support.gateway import (
    AUTH,
    READ_TOKEN,
    STAFF,
    STAFF_TOKEN,
    START,
    TOKEN,
    Client,
    credentials_for_tests,
    order,
)

POLICY = RetryPolicy(max_attempts=5, initial_backoff_s=10, max_backoff_s=60, jitter=0)
HOSTILE = "<script>alert('x')</script>"
SIGNING_KEY = b"a-signing-key-only-for-console-tests-0123"


class SwappableCredentials:
    """The gateway's credentials, which the test may change under a signed-in session (as a
    restart with another tokens file would)."""

    def __init__(self, table: TokenTable) -> None:
        self.table = table

    def resolve(self, token: bytes) -> Principal | None:
        return self.table.resolve(token)

    def principal_named(self, name: str, fingerprint: str, key: bytes) -> Principal | None:
        return self.table.principal_named(name, fingerprint, key)


class CookieClient(Client):
    """The suite's in-process client, with its cookie jar in reach (the console's session)."""

    @property
    def cookies(self) -> httpx.Cookies:
        return self._client.cookies


@contextmanager
def serving(app: Starlette) -> Iterator[CookieClient]:
    client = CookieClient(app)
    try:
        yield client
    finally:
        client.close()


@dataclass
class Console:
    client: CookieClient
    store: EventStore
    db: Database
    clock: Clock
    tasks: dict[str, Task]
    credentials: SwappableCredentials
    app: Starlette

    def project(self) -> None:
        views = all_views()
        ProjectionRunner(self.store, ViewStore(self.db, views), views).catch_up()

    def sign_in(self, token: str) -> httpx.Response:
        self.client.cookies.clear()
        return self.client.post("/admin/sign-in", data={"token": token})

    def csrf(self, path: str = "/admin") -> str:
        found = re.search(r'name="csrf" value="([^"]+)"', self.client.get(path).text)
        assert found is not None
        return found.group(1)

    def last_event(self) -> int:
        return self.store.max_notification_id()


def shown(client: Client, reply: httpx.Response) -> httpx.Response:
    """The page a console POST that recorded something leads to (a 303: reloading it records
    nothing again)."""
    assert reply.status_code == 303, reply.text
    location = reply.headers["location"]
    assert location.startswith("/admin")
    return client.get(location)


def plan(step: str, server_id: str, service_id: str = "1001") -> Task:
    return Task.plan(
        service_id=service_id,
        run=1,
        step=step,
        role=server_id.split("-")[0],
        action=f"ensure {step}",
        server_id=server_id,
        params={},
        depends_on=[],
        now=START,
    )


@pytest.fixture
def console(tmp_path: Path) -> Iterator[Console]:
    url = f"sqlite:///{tmp_path / 'store.sqlite'}"
    store, db, clock = EventStore(url), Database(url), Clock(START)
    credentials = SwappableCredentials(credentials_for_tests())
    app = create_app(
        ledger=StoreLedger(store, PasswordSealer("a-secret-key-only-for-tests")),
        views=SqlViewQueries(db),
        credentials=credentials,
        clock=clock,
        servers=ServerRegistry(store),
        settings=StoreSettingsBook(store, runtime_defaults(Settings())),
        live=SqlLiveChanges(db),
        signing_key=SIGNING_KEY,
    )
    try:
        with serving(app) as client:
            assert client.post("/v1/services", json=order(), headers=AUTH).status_code == 202
            tasks = {
                "done": plan("done", "web-1"),
                "broken": plan("broken", "mail-1"),
                "running": plan("running", "dns-1"),
            }
            tasks["done"].dispatch(START + timedelta(minutes=1), 60)
            assert tasks["done"].succeed(
                1, START + timedelta(minutes=2), changed=True, log=["created", HOSTILE]
            )
            tasks["broken"].dispatch(START + timedelta(minutes=1), 60)
            assert tasks["broken"].fail(
                1,
                START + timedelta(minutes=3),
                error=f"exit 8: {HOSTILE}",
                retryable=False,
                log=[],
                policy=POLICY,
                unit_random=0,
            )
            tasks["running"].dispatch(START + timedelta(minutes=4), 3600)
            store.save(*tasks.values())
            clock.now = START + timedelta(minutes=10)
            setup = Console(client, store, db, clock, tasks, credentials, app)
            setup.project()
            yield setup
    finally:
        store.close()
        db.close()


# --- sign-in and sessions ---------------------------------------------------------------------


def test_a_staff_token_signs_in_and_the_cookie_holds_no_token(console: Console) -> None:
    reply = console.sign_in(STAFF_TOKEN)
    assert reply.status_code == 303 and reply.headers["location"] == "/admin"
    cookie = reply.headers["set-cookie"]
    assert cookie.startswith(f"{COOKIE}=")
    for attribute in ("HttpOnly", "Path=/admin", "SameSite=strict"):
        assert attribute.lower() in cookie.lower(), cookie
    assert "secure" not in cookie.lower()  # plain http here; https sets it
    assert STAFF_TOKEN not in cookie and "t0ken" not in cookie
    home = console.client.get("/admin")
    assert home.status_code == 200
    assert 'id="sign-out"' in home.text and "staff" in home.text
    # no other site may show the console in a frame (clickjacking a staff member's clicks)
    assert "frame-ancestors 'none'" in home.headers["content-security-policy"]
    assert home.headers["x-frame-options"] == "DENY"
    assert STAFF_TOKEN not in home.text
    over_https = console.client.post(
        "https://gateway.test/admin/sign-in", data={"token": STAFF_TOKEN}
    )
    assert "; secure" in over_https.headers["set-cookie"].lower()


def test_the_cookie_is_secure_when_the_public_address_is_https(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'store.sqlite'}"
    store, db = EventStore(url), Database(url)
    app = create_app(
        ledger=StoreLedger(store, PasswordSealer("a-secret-key-only-for-tests")),
        views=SqlViewQueries(db),
        credentials=credentials_for_tests(),
        clock=Clock(START),
        live=SqlLiveChanges(db),
        signing_key=SIGNING_KEY,
        public_url="https://panel.example.com",
    )
    try:
        with serving(app) as client:  # plain http: TLS ends at a proxy in front
            signed = client.post("/admin/sign-in", data={"token": STAFF_TOKEN})
            assert signed.status_code == 303
            assert "; secure" in signed.headers["set-cookie"].lower()
    finally:
        store.close()
        db.close()


@pytest.mark.parametrize(
    ("token", "message"),
    [
        ("not-a-token-anyone-was-given-0123456789", "That token names no credential."),
        (TOKEN, "WHMCS"),  # services scope only: refused with a message
    ],
)
def test_a_wrong_or_whmcs_token_is_refused_with_a_message(
    console: Console, token: str, message: str
) -> None:
    reply = console.sign_in(token)
    assert reply.status_code == 403
    assert message in reply.text and 'class="flash error"' in reply.text
    assert "set-cookie" not in reply.headers
    assert token not in reply.text
    assert console.client.get("/admin").status_code == 303


def test_without_a_session_every_page_leads_to_the_sign_in(console: Console) -> None:
    for path in ("/admin", "/admin/services", "/admin/tasks", "/admin/settings", "/admin/live"):
        reply = console.client.get(path)
        assert (reply.status_code, reply.headers.get("location")) == (303, "/admin/sign-in")
    page = console.client.get("/admin/sign-in")
    assert 'form id="sign-in"' in page.text and 'name="token"' in page.text


def test_an_altered_or_expired_session_is_no_session(console: Console) -> None:
    console.sign_in(STAFF_TOKEN)
    sealed = console.client.cookies[COOKIE]
    body, mac = sealed.rsplit(".", 1)
    console.client.cookies.set(COOKIE, body + "." + mac[::-1], path="/admin")
    assert console.client.get("/admin").status_code == 303
    console.client.cookies.set(COOKIE, sealed, path="/admin")
    assert console.client.get("/admin").status_code == 200
    console.clock.advance(8 * 60 + 1)
    assert console.client.get("/admin").status_code == 303


@pytest.mark.parametrize(
    "change",
    ["removed", "demoted to read", "given a new token"],
)
def test_a_credential_removed_or_changed_ends_its_sessions(console: Console, change: str) -> None:
    console.sign_in(STAFF_TOKEN)
    assert console.client.get("/admin").status_code == 200
    csrf = console.csrf()
    others = [e for e in credentials_for_tests().entries if e.principal.name != "staff"]
    replaced = {
        "removed": [],
        "demoted to read": [known_token("staff", {READ}, STAFF_TOKEN)],
        "given a new token": [known_token("staff", {"staff"}, "another-" + STAFF_TOKEN)],
    }[change]
    console.credentials.table = TokenTable.of([*others, *replaced])
    assert console.client.get("/admin").status_code == 303
    before = console.last_event()
    post = console.client.post("/admin/services/1001/verify-repair", data={"csrf": csrf})
    assert post.status_code == 403 and "sign in again" in post.text
    assert console.last_event() == before


def test_sign_out_needs_the_csrf_token_and_ends_the_session(console: Console) -> None:
    console.sign_in(STAFF_TOKEN)
    assert console.client.post("/admin/sign-out", data={}).status_code == 403
    assert console.client.get("/admin").status_code == 200
    out = console.client.post("/admin/sign-out", data={"csrf": console.csrf()})
    assert (out.status_code, out.headers["location"]) == (303, "/admin/sign-in")
    assert console.client.get("/admin").status_code == 303


# --- CSRF and read-only staff -------------------------------------------------------------------


# every POST route under /admin but the sign-in, with a body it would act on ("{broken}":
# the id of the task in error); the test below checks that none is left out
POSTS: list[tuple[str, dict[str, str]]] = [
    ("/admin/tasks/bulk", {"action": "delete-succeeded", "confirm": "yes"}),
    ("/admin/tasks/{broken}/retry", {}),
    ("/admin/tasks/{broken}/cancel", {}),
    ("/admin/settings", {"retry.max_attempts": "7"}),
    ("/admin/statistics/refresh", {}),
    *((f"/admin/services/1001/{action}", {}) for action in ("sync-usage", "verify-repair")),
    ("/admin/services/1001/redeploy", {}),
    ("/admin/services/1001/factory-reset", {"confirm_domain": "shop.example.com"}),
    ("/admin/services/1001/ssl/web/issue", {}),
    ("/admin/services/1001/ssl/web/custom", {"certificate": "x", "private_key": "y"}),
    ("/admin/services/1001/ssl/web/remove-custom", {}),
]
SIGN_OUT = ("/admin/sign-out", {})


def test_the_post_routes_below_are_every_console_post(console: Console) -> None:
    routes = {
        route.path
        for route in console.app.routes
        if isinstance(route, Route) and "POST" in (route.methods or ())
        if route.path.startswith("/admin") and route.path != "/admin/sign-in"
    }
    covered = {
        "/admin/tasks/bulk",
        "/admin/tasks/{task_id}/{action}",
        "/admin/settings",
        "/admin/statistics/refresh",
        "/admin/services/{service_id}/{action}",
        "/admin/services/{service_id}/ssl/{role}/{change}",
        "/admin/sign-out",
    }
    assert routes == covered


def posted(console: Console, path: str) -> str:
    return path.format(broken=console.tasks["broken"].id)


@pytest.mark.parametrize(("path", "fields"), [*POSTS, SIGN_OUT])
def test_a_post_without_the_csrf_token_is_refused_and_records_nothing(
    console: Console, path: str, fields: dict[str, str]
) -> None:
    console.sign_in(STAFF_TOKEN)
    before = console.last_event()
    for csrf in (None, "forged-" + "x" * 20):
        data = fields if csrf is None else {**fields, "csrf": csrf}
        reply = console.client.post(posted(console, path), data=data)
        assert reply.status_code == 403, reply.text
        assert "CSRF" in reply.text
    assert console.last_event() == before
    assert console.client.get("/admin").status_code == 200  # still signed in


@pytest.mark.parametrize(("path", "fields"), POSTS)
def test_read_only_staff_may_post_nothing(
    console: Console, path: str, fields: dict[str, str]
) -> None:
    assert console.sign_in(READ_TOKEN).status_code == 303
    before = console.last_event()
    reply = console.client.post(posted(console, path), data={**fields, "csrf": console.csrf()})
    assert reply.status_code == 403 and "only read" in reply.text
    assert console.last_event() == before


def test_read_only_staff_see_every_page_and_no_write_form(console: Console) -> None:
    assert console.sign_in(READ_TOKEN).status_code == 303
    task_id = str(console.tasks["broken"].id)
    pages = [
        "/admin",
        "/admin/services",
        "/admin/tasks",
        f"/admin/tasks/{task_id}",
        "/admin/oplog",
        "/admin/statistics",
        "/admin/settings",
        "/admin/servers",
        *(f"/admin/services/1001?tab={tab}" for tab in ("overview", "deploy", "tasks", "ssl")),
        "/admin/services/1001?tab=events",
    ]
    for path in pages:
        reply = console.client.get(path)
        assert reply.status_code == 200, (path, reply.text)
        posts = re.findall(r'<form[^>]*method="post"[^>]*action="([^"]+)"', reply.text)
        assert posts == ["/admin/sign-out"], (path, posts)


# --- what a POST answers ----------------------------------------------------------------------


def test_sending_a_button_twice_or_reloading_its_result_records_once(console: Console) -> None:
    console.sign_in(STAFF_TOKEN)
    deploy = console.client.get("/admin/services/1001?tab=deploy").text
    form = re.search(r'action="/admin/services/1001/redeploy">(.*?)</form>', deploy)
    assert form is not None
    fields = dict(re.findall(r'name="(csrf|command_id)" value="([^"]+)"', form.group(1)))
    assert set(fields) == {"csrf", "command_id"}
    before = console.last_event()
    first = console.client.post("/admin/services/1001/redeploy", data=fields)
    assert first.status_code == 303
    assert console.last_event() == before + 1
    # the browser sends the very same form again (a double click, a resend)
    again = console.client.post("/admin/services/1001/redeploy", data=fields)
    assert again.status_code == 303
    assert console.last_event() == before + 1
    # reloading the page a POST led to is a GET: it shows the message and records nothing
    for _ in range(2):
        result = console.client.get(first.headers["location"])
        assert result.status_code == 200
        assert '<div class="flash">A redeploy is queued.</div>' in result.text
    assert console.last_event() == before + 1
    # another rendering of the page gives the button another command id
    fresh = console.client.get("/admin/services/1001?tab=deploy").text
    assert fields["command_id"] not in fresh


def test_a_message_in_a_link_made_elsewhere_is_not_shown(console: Console) -> None:
    console.sign_in(STAFF_TOKEN)
    link = "/admin/settings?flash=Call+0800+to+confirm&flash_mac=" + "0" * 64
    assert "Call 0800" not in console.client.get(link).text
    assert "Call 0800" not in console.client.get("/admin/settings?flash=Call+0800").text


def test_a_deeply_nested_or_too_large_form_is_a_page(console: Console) -> None:
    console.sign_in(STAFF_TOKEN)
    before = console.last_event()
    nested = console.client.post(
        "/admin/settings", data={"retry.max_attempts": "[" * 5000, "csrf": console.csrf()}
    )
    assert nested.status_code == 422, nested.text[:300]
    assert 'class="flash error"' in nested.text
    large = console.client.post(
        "/admin/settings", data={"retry.max_attempts": "7" * 70_000, "csrf": console.csrf()}
    )
    assert large.status_code == 413
    assert large.headers["content-type"].startswith("text/html")
    assert "larger than" in large.text
    sign_in = console.client.post("/admin/sign-in", data={"token": "t" * 70_000})
    assert sign_in.status_code == 413 and sign_in.headers["content-type"].startswith("text/html")
    assert console.last_event() == before


# --- the queue, settings and escaping -----------------------------------------------------------


def queue_rows(html: str) -> dict[str, str]:
    return dict(re.findall(r'<tr data-task-id="([^"]+)" data-state="([^"]+)"', html))


def test_a_bulk_action_needs_its_confirmation_and_changes_the_queue(console: Console) -> None:
    console.sign_in(STAFF_TOKEN)
    queue = console.client.get("/admin/tasks")
    ids = {step: str(task.id) for step, task in console.tasks.items()}
    queue_table = queue.text.split('id="queue-table"', 1)[1]
    assert queue_rows(queue_table) == {
        ids["done"]: "succeeded",
        ids["broken"]: "error",
        ids["running"]: "dispatched",
    }
    assert 'form class="bulk" data-action="delete-succeeded"' in queue.text
    before = console.last_event()
    unconfirmed = console.client.post(
        "/admin/tasks/bulk", data={"action": "delete-succeeded", "csrf": console.csrf()}
    )
    assert unconfirmed.status_code == 422 and "confirmation" in unconfirmed.text
    assert console.last_event() == before

    done = shown(
        console.client,
        console.client.post(
            "/admin/tasks/bulk",
            data={"action": "delete-succeeded", "confirm": "yes", "csrf": console.csrf()},
        ),
    )
    assert done.status_code == 200
    assert '<div class="flash">delete succeeded: 1 matched, 1 changed.</div>' in done.text
    assert console.last_event() == before + 1
    console.project()
    after = console.client.get("/admin/tasks").text.split('id="queue-table"', 1)[1]
    assert queue_rows(after) == {ids["broken"]: "error", ids["running"]: "dispatched"}
    # the API sees the same queue: one code path
    listed = console.client.get("/v1/tasks", headers=STAFF).json()["tasks"]
    assert {task["task_id"] for task in listed} == {ids["broken"], ids["running"]}


def test_a_bad_setting_shows_the_api_message_and_changes_nothing(console: Console) -> None:
    api = console.client.request(
        "PUT", "/v1/settings", json={"retry": {"max_attempts": 0}}, headers=STAFF
    )
    assert api.status_code == 422
    message = api.json()["error"]
    console.sign_in(STAFF_TOKEN)
    shown_before = console.client.get("/v1/settings", headers=STAFF).json()
    before = console.last_event()
    reply = console.client.post(
        "/admin/settings", data={"retry.max_attempts": "0", "csrf": console.csrf()}
    )
    assert reply.status_code == 422
    flash = re.search(r'<div class="flash error">([^<]*)</div>', reply.text)
    assert flash is not None and flash.group(1) == message.replace("'", "&#39;")
    assert console.last_event() == before
    assert console.client.get("/v1/settings", headers=STAFF).json() == shown_before
    assert 'name="retry.max_attempts" value="0"' in reply.text  # what was typed, to correct

    good = shown(
        console.client,
        console.client.post(
            "/admin/settings", data={"retry.max_attempts": "7", "csrf": console.csrf()}
        ),
    )
    assert good.status_code == 200 and "Changed: retry.max_attempts." in good.text
    in_force = console.client.get("/v1/settings", headers=STAFF).json()["settings"]
    assert in_force["retry"]["max_attempts"] == 7
    assert 'id="setting-retry.max_attempts" name="retry.max_attempts" value="7"' in good.text


def test_hostile_text_in_a_log_or_an_error_stays_text(console: Console) -> None:
    console.sign_in(STAFF_TOKEN)
    escaped = "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;"
    pages = [
        f"/admin/tasks/{console.tasks['done'].id}",  # the log line
        f"/admin/tasks/{console.tasks['broken'].id}",  # the error
        "/admin/tasks",
        "/admin/services/1001?tab=tasks",
        "/admin/services/1001?tab=deploy",
        "/admin",
    ]
    for path in pages:
        reply = console.client.get(path)
        assert reply.status_code == 200, path
        assert HOSTILE not in reply.text, path
        assert escaped in reply.text, path
        assert "script-src 'self'" in reply.headers["content-security-policy"]


def test_the_service_page_shows_its_timeline_and_guards_the_factory_reset(
    console: Console,
) -> None:
    console.sign_in(STAFF_TOKEN)
    deploy = console.client.get("/admin/services/1001?tab=deploy")
    steps = re.findall(r'<li data-step="([^"]+)" data-state="([^"]+)"', deploy.text)
    assert steps == [("done", "done"), ("broken", "failed"), ("running", "running")]
    fragment = console.client.get("/admin/services/1001?tab=deploy&fragment=1")
    assert fragment.text.lstrip().startswith('<ol id="deploy-timeline"')
    before = console.last_event()
    wrong = console.client.post(
        "/admin/services/1001/factory-reset",
        data={"confirm_domain": "other.example.com", "csrf": console.csrf()},
    )
    assert wrong.status_code == 422 and "type the service" in wrong.text
    assert console.last_event() == before
    bad = console.client.get("/admin/services", params={"status": "sleeping"})
    assert bad.status_code == 400 and "status must be one of" in bad.text
    search = console.client.get("/admin/services", params={"q": "shop.example"})
    assert re.findall(r'<tr data-service-id="([^"]+)"', search.text) == ["1001"]
    assert (
        re.findall(
            r'<tr data-service-id="([^"]+)"', console.client.get("/admin/services?q=nothing").text
        )
        == []
    )


# --- wiring ---------------------------------------------------------------------------------


def test_the_composition_root_serves_every_console_page(tmp_path: Path) -> None:
    """``System.gateway()``: the console over every real port (usage, SSL, servers, settings),
    each page read from views the store's events were projected into."""
    system = System(
        Settings(
            database_url=f"sqlite:///{tmp_path / 'store.sqlite'}",
            api_token=TOKEN,
            staff_token=STAFF_TOKEN,
            secret_key="a-secret-key-only-for-tests-0123456789",
        )
    )
    try:
        with serving(system.gateway()) as client:
            assert client.post("/v1/services", json=order(), headers=AUTH).status_code == 202
            views = all_views()
            ProjectionRunner(system.store, ViewStore(system.db, views), views).catch_up()
            signed = client.post("/admin/sign-in", data={"token": STAFF_TOKEN})
            assert signed.status_code == 303
            pages = [
                "/admin",
                "/admin/services?q=1001",
                "/admin/tasks",
                "/admin/oplog?service_id=1001",
                "/admin/statistics?sort=disk_mb&order=desc",
                "/admin/settings",
                "/admin/servers",
                *(f"/admin/services/1001?tab={tab}" for tab in ("overview", "deploy", "tasks")),
                "/admin/services/1001?tab=ssl",
                "/admin/services/1001?tab=events&as_of=2099-01-01T00:00:00Z",
            ]
            for path in pages:
                reply = client.get(path)
                assert reply.status_code == 200, (path, reply.text)
                assert 'id="sign-out"' in reply.text
            assert 'data-service-id="1001"' in client.get("/admin/statistics").text
            assert "Service.Ordered" in client.get("/admin/services/1001?tab=events").text
            bad = client.get("/admin/statistics?sort=nonsense")
            assert bad.status_code == 400 and "sort must be one of" in bad.text
            csrf = re.search(r'name="csrf" value="([^"]+)"', client.get("/admin").text)
            assert csrf is not None
            refreshed = shown(
                client, client.post("/admin/statistics/refresh", data={"csrf": csrf.group(1)})
            )
            assert refreshed.status_code == 200 and "Refresh asked: no node" in refreshed.text
            before = system.store.max_notification_id()
            synced = shown(
                client, client.post("/admin/services/1001/sync-usage", data={"csrf": csrf.group(1)})
            )
            assert synced.status_code == 200 and "A usage sync is asked for." in synced.text
            assert system.store.max_notification_id() > before
            actors = [e["data"].get("actor") for e in system.store.events_of("1001")]
            assert actors[-1] == "staff"  # the signed-in credential's name
    finally:
        asyncio.run(system.close())


def test_a_task_is_retried_or_cancelled_from_its_page(console: Console) -> None:
    console.sign_in(STAFF_TOKEN)
    broken, running = console.tasks["broken"].id, console.tasks["running"].id
    page = console.client.get(f"/admin/tasks/{broken}")
    assert 'id="retry-task"' in page.text and 'id="cancel-task"' not in page.text
    assert 'id="task-log"' in page.text and "data-stream" not in page.text  # no live log port
    before = console.last_event()
    refused = console.client.post(f"/admin/tasks/{running}/retry", data={"csrf": console.csrf()})
    assert refused.status_code == 409 and 'class="flash error"' in refused.text
    assert console.last_event() == before
    cancelled = shown(
        console.client,
        console.client.post(f"/admin/tasks/{running}/cancel", data={"csrf": console.csrf()}),
    )
    assert cancelled.status_code == 200 and "The task&#39;s cancel is recorded." in cancelled.text
    assert console.last_event() == before + 1
    console.project()
    assert 'data-state="cancelled"' in console.client.get(f"/admin/tasks/{running}").text
    unknown = console.client.get("/admin/tasks/not-a-task")
    assert unknown.status_code == 404 and "not found" in unknown.text


def test_ssl_buttons_show_the_refusal_and_record_nothing(tmp_path: Path) -> None:
    system = System(
        Settings(
            database_url=f"sqlite:///{tmp_path / 'store.sqlite'}",
            api_token=TOKEN,
            staff_token=STAFF_TOKEN,
            secret_key="a-secret-key-only-for-tests-0123456789",
        )
    )
    try:
        with serving(system.gateway()) as client:
            assert client.post("/v1/services", json=order(), headers=AUTH).status_code == 202
            client.post("/admin/sign-in", data={"token": STAFF_TOKEN})
            found = re.search(r'name="csrf" value="([^"]+)"', client.get("/admin").text)
            assert found is not None
            csrf = found.group(1)
            api = client.request(
                "PUT",
                "/v1/services/1001/ssl/web/custom",
                json={"certificate": "", "private_key": "x"},
                headers=AUTH,
            )
            assert api.status_code == 422
            api_issue = client.post("/v1/services/1001/ssl/web/issue", headers=AUTH)
            assert api_issue.status_code == 404  # no certificate seeded yet
            before = system.store.max_notification_id()
            upload = client.post(
                "/admin/services/1001/ssl/web/custom",
                data={"certificate": "", "private_key": "x", "csrf": csrf},
            )
            assert upload.status_code == 422
            assert api.json()["error"] in upload.text
            issue = client.post("/admin/services/1001/ssl/web/issue", data={"csrf": csrf})
            assert issue.status_code == 404
            assert api_issue.json()["error"].replace("'", "&#39;") in issue.text
            role = client.post("/admin/services/1001/ssl/nonsense/issue", data={"csrf": csrf})
            assert role.status_code == 404 and "no certificate role" in role.text
            assert system.store.max_notification_id() == before
    finally:
        asyncio.run(system.close())


def test_the_services_list_is_paged_newest_first(console: Console) -> None:
    for n in range(2, 53):  # 52 services in all: a page of 50, then 2
        body = order(service_id=1000 + n, domain=f"s{n}.example.com", username=f"user{n}")
        console.clock.now = START + timedelta(minutes=10 + n)
        assert console.client.post("/v1/services", json=body, headers=AUTH).status_code == 202
    console.project()
    console.sign_in(STAFF_TOKEN)
    first = console.client.get("/admin/services")
    listed = re.findall(r'<tr data-service-id="([^"]+)"', first.text)
    assert listed == [str(1000 + n) for n in range(52, 2, -1)]
    link = re.search(r'id="next-page" href="([^"]+)"', first.text)
    assert link is not None
    second = console.client.get(link.group(1).replace("&amp;", "&"))
    assert re.findall(r'<tr data-service-id="([^"]+)"', second.text) == ["1002", "1001"]
    assert 'id="next-page"' not in second.text
    # a live update of page 2 swaps in page 2, not page 1
    fragment = re.search(r'data-fragment="([^"]+)"', second.text)
    assert fragment is not None
    swapped = console.client.get(fragment.group(1).replace("&amp;", "&"))
    assert re.findall(r'<tr data-service-id="([^"]+)"', swapped.text) == ["1002", "1001"]


def test_the_oplog_says_how_far_its_text_filter_looks(console: Console) -> None:
    console.sign_in(STAFF_TOKEN)
    plain = console.client.get("/admin/oplog")
    assert plain.status_code == 200 and 'id="oplog-text-scope"' not in plain.text
    found = console.client.get("/admin/oplog", params={"text": "whmcs"})
    assert found.status_code == 200
    assert "latest 200 entries" in found.text and 'id="oplog-text-scope"' in found.text
    assert "<td>whmcs</td>" in found.text


def test_a_refusal_has_the_api_status(console: Console) -> None:
    console.sign_in(STAFF_TOKEN)
    unknown = "00000000-0000-4000-8000-000000000000"
    before = console.last_event()
    for action in ("retry", "cancel"):
        api = console.client.post(f"/v1/tasks/{unknown}/{action}", headers=STAFF)
        reply = console.client.post(
            f"/admin/tasks/{unknown}/{action}", data={"csrf": console.csrf()}
        )
        assert reply.status_code == api.status_code == 404, reply.text
    not_a_form = console.client.post(
        "/admin/settings", content=b'{"csrf": "x"}', headers={"content-type": "application/json"}
    )
    assert not_a_form.status_code == 415
    assert not_a_form.headers["content-type"].startswith("text/html")
    assert console.last_event() == before


def test_a_step_due_to_run_again_shows_running_as_on_the_client_area(console: Console) -> None:
    flaky = plan("flaky", "web-1")
    flaky.dispatch(START + timedelta(minutes=5), 60)
    assert flaky.fail(
        1,
        START + timedelta(minutes=6),
        error="timed out",
        retryable=True,
        log=[],
        policy=POLICY,
        unit_random=0,
    )
    assert flaky.state == "retry_scheduled"
    console.store.save(flaky)
    console.project()
    console.sign_in(STAFF_TOKEN)
    deploy = console.client.get("/admin/services/1001?tab=deploy")
    steps = dict(re.findall(r'<li data-step="([^"]+)" data-state="([^"]+)"', deploy.text))
    assert steps["flaky"] == "running"


def test_a_button_logs_its_request_under_its_command_id(
    console: Console, caplog: pytest.LogCaptureFixture
) -> None:
    console.sign_in(STAFF_TOKEN)
    csrf = console.csrf()
    caplog.set_level(logging.INFO, logger="hostwright.gateway.requests")
    reply = console.client.post(
        "/admin/services/1001/verify-repair", data={"csrf": csrf, "command_id": "staff-vr-1"}
    )
    assert reply.status_code == 303
    lines = [
        vars(record)
        for record in caplog.records
        if record.name == "hostwright.gateway.requests"
        and vars(record).get("path") == "/admin/services/1001/verify-repair"
    ]
    assert [line.get("command_id") for line in lines] == ["staff-vr-1"]
    recorded = [e["data"].get("command_id") for e in console.store.events_of("1001")]
    assert recorded[-1] == "staff-vr-1"
