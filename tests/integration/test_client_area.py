"""The customer's client area over the real app: a real event store and views on SQLite and
PostgreSQL, the projection runner building them, the real ledgers, the live feed over
``SqlLiveChanges``.

A client link opens its own service only, and nothing of the API or the console; an
expired or altered one gets a readable 403 page. The page shows the splash, the error
screen or the dashboard as the service's status says; its live stream sends a new state
when the service's views change; its buttons record what the API's routes record, and
nothing while the service is suspended or the token is wrong. Hostile text stays text.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from starlette.applications import Starlette

from domain.certificate import Certificate, certificate_uuid
from domain.errors import Conflict, NotFound
from domain.retry_policy import RetryPolicy
from domain.ssl_types import Http01Spot, InstallTarget, SslCadence
from domain.task import Task
from gateway.app import create_app
from gateway.screens.client_state import TROUBLE_WORDS
from ops.adapters.certificate_book import StoreCertificateBook
from ops.adapters.certificate_inspector import CertificateInspector
from ops.adapters.certificate_ledger import StoreCertificateLedger
from ops.adapters.command_ledger import StoreLedger
from ops.adapters.sealing import PasswordSealer
from ops.devtools.mini_ca import MiniCa
from ops.store.database import Database
from ops.store.event_store import EventStore, event_topic
from ops.views.live_changes import SqlLiveChanges
from ops.views.projection_runner import ProjectionRunner
from ops.views.ssl_queries import SqlSslQueries
from ops.views.usage_queries import SqlUsageQueries
from ops.views.view_queries import SqlViewQueries
from ops.views.view_store import ViewStore
from projections.catalogue import all_views
from tests.fakes.clock import Clock
from tests.support.event_streams import EventStreamReader
from tests.support.gateway import AUTH, READER, Client, credentials_for_tests, order, serving

NOW = datetime.now(UTC).replace(microsecond=0)
SECRET = "a-secret-key-only-for-tests-0123456789"
KEY = b"screens-signing-key-for-tests-012"
PUBLIC = "https://panel.example.net"
POLICY = RetryPolicy(max_attempts=1, initial_backoff_s=1, max_backoff_s=1, jitter=0)
HOSTILE = '<script>alert("x")</script>'
SCREENS = ("splash", "error-screen", "dashboard")


@dataclass
class Area:
    app: Starlette
    client: Client
    store: EventStore
    runner: ProjectionRunner
    clock: Clock
    book: StoreCertificateBook
    tasks: dict[str, Task]
    db: Database
    ca: MiniCa

    def project(self) -> None:
        self.runner.catch_up()

    def link(self, service_id: str = "1001", **body: Any) -> str:
        reply = self.client.post(
            f"/v1/services/{service_id}/client-link", json=body or None, headers=AUTH
        )
        assert reply.status_code == 200, reply.text
        url: str = reply.json()["url"]
        return parse_qs(urlsplit(url).query)["token"][0]

    def page(self, token: str, service_id: str = "1001") -> httpx.Response:
        return self.client.get(f"/client/{service_id}", params={"token": token})

    def state(self, token: str) -> dict[str, Any]:
        reply = self.client.get("/client/1001/state", params={"token": token})
        assert reply.status_code == 200, reply.text
        body: dict[str, Any] = reply.json()
        return body

    def act(self, path: str, token: str, service_id: str = "1001", **fields: str) -> Any:
        return self.client.post(
            f"/client/{service_id}/{path}",
            data={"token": token, **fields},
            headers={"Accept": "application/json"},
        )

    def recorded_since(self, position: int) -> list[tuple[str, Any]]:
        found = []
        for notification in self.store.notifications(position, 100):
            event = self.store.decode(notification)
            found.append((event_topic(event).rsplit(".", 2)[-2:], event))
        return [(".".join(topic), event) for topic, event in found]

    def position(self) -> int:
        return self.store.max_notification_id()

    def service_changes(self, change: str, *args: Any) -> None:
        service = self.store.get_service("1001")
        getattr(service, change)(self.clock.advance(seconds=1), *args)
        self.store.save(service)
        self.project()


def plan(step: str, role: str) -> Task:
    return Task.plan(
        service_id="1001",
        run=1,
        step=step,
        role=role,
        action=f"create {step}",
        server_id=f"{role}1",
        params={},
        depends_on=[],
        now=NOW,
    )


@pytest.fixture
def area(database_url: str) -> Iterator[Area]:
    store, db, clock = EventStore(database_url), Database(database_url), Clock(NOW)
    views = all_views()
    runner = ProjectionRunner(store, ViewStore(db, views), views)
    book = StoreCertificateBook(store)
    ca = MiniCa("hostwright client area test root", now=NOW)
    app = create_app(
        ledger=StoreLedger(store, PasswordSealer(SECRET)),
        views=SqlViewQueries(db),
        credentials=credentials_for_tests(),
        clock=clock,
        certificates=StoreCertificateLedger(
            book,
            PasswordSealer(SECRET, purpose="private-key"),
            CertificateInspector(ca.certificate_pem),
            SslCadence,
        ),
        ssl_views=SqlSslQueries(db),
        usage=SqlUsageQueries(db),
        live=SqlLiveChanges(db),
        signing_key=KEY,
        public_url=PUBLIC,
    )
    try:
        with serving(app) as client:
            for service_id in (1001, 1002):
                body = order(service_id=service_id, domain=f"shop{service_id}.example.com")
                body["username"] = f"shop{service_id}"
                reply = client.post("/v1/services", json=body, headers=AUTH)
                assert reply.status_code == 202, reply.text
            tasks = {
                "web.user": plan("web.user", "web"),
                "mail.domain": plan("mail.domain", "mail"),
            }
            web = tasks["web.user"]
            web.dispatch(clock.advance(seconds=1), 30)
            web.succeed(1, clock.advance(seconds=2), changed=True, log=["ok"])
            tasks["mail.domain"].dispatch(clock.advance(seconds=1), 30)
            store.save(*tasks.values())
            seed = Certificate.seed(
                service_id="1001",
                role="web",
                names=["shop1001.example.com"],
                install=InstallTarget("web1", "web", "shop1001", "shop1001.example.com"),
                dns_targets=[],
                http01=Http01Spot("web1", "shop1001", "/home/shop1001/web/x/public_html"),
                expected_addresses=["192.0.2.10"],
                cadence=SslCadence(),
                now=NOW,
                actor="deploy",
            )
            book.update(seed.id, lambda _: seed, "busy")
            setup = Area(app, client, store, runner, clock, book, tasks, db, ca)
            setup.project()
            yield setup
    finally:
        store.close()
        db.close()


class Elements(HTMLParser):
    """The attributes of every element with an id, and the text of each."""

    def __init__(self, html: str) -> None:
        super().__init__()
        self.attrs: dict[str, dict[str, str | None]] = {}
        self.text: dict[str, str] = {}
        self._open: list[str | None] = []
        self.feed(html)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        element_id = found.get("id")
        if element_id:
            self.attrs[element_id] = found
            self.text[element_id] = ""
        if tag not in ("input", "meta", "link", "br"):
            self._open.append(element_id)

    def handle_endtag(self, tag: str) -> None:
        if self._open and tag not in ("input", "meta", "link", "br"):
            self._open.pop()

    def handle_data(self, data: str) -> None:
        for element_id in self._open:
            if element_id:
                self.text[element_id] += data

    def visible_screen(self) -> str:
        shown = [s for s in SCREENS if "hidden" not in self.attrs[s]]
        assert len(shown) == 1, shown
        return shown[0]


def elements(reply: httpx.Response) -> Elements:
    assert reply.status_code == 200, reply.text
    assert reply.headers["content-type"].startswith("text/html")
    return Elements(reply.text)


# --- the link and who it opens ----------------------------------------------------------------


def test_the_link_is_minted_for_an_ordered_service_under_the_public_address(area: Area) -> None:
    reply = area.client.post("/v1/services/1001/client-link", json={"ttl_s": 600}, headers=AUTH)
    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert body["url"].startswith(f"{PUBLIC}/client/1001?token=")
    assert datetime.fromisoformat(body["expires_at"]) == area.clock.now + timedelta(seconds=600)
    unknown = area.client.post("/v1/services/9999/client-link", headers=AUTH)
    assert unknown.status_code == 404 and unknown.json()["result"] == "error"
    for ttl in (59, 7 * 24 * 3600 + 1, "600", True):
        bad = area.client.post("/v1/services/1001/client-link", json={"ttl_s": ttl}, headers=AUTH)
        assert bad.status_code == 422, (ttl, bad.text)
    assert area.client.post("/v1/services/1001/client-link", headers=READER).status_code == 403
    assert area.client.post("/v1/services/1001/client-link").status_code == 401


def test_a_token_opens_its_own_service_and_nothing_else(area: Area) -> None:
    token = area.link()
    assert area.page(token).status_code == 200
    other = area.page(token, "1002")
    assert other.status_code == 403 and "not valid" in other.text
    assert "shop1002" not in other.text
    state = area.client.get("/client/1002/state", params={"token": token})
    assert state.status_code == 403 and state.json()["result"] == "error"
    bearer = {"Authorization": f"Bearer {token}"}
    for path in ("/v1/services/1001", "/v1/services/1001/timeline", "/v1/oplog"):
        assert area.client.get(path, headers=bearer).status_code in (401, 403), path
    assert area.client.post("/v1/services/1001/sync-usage", headers=bearer).status_code == 401
    admin = area.client.get("/admin", params={"token": token}, headers=bearer)
    assert (admin.status_code, admin.headers.get("location")) == (303, "/admin/sign-in")
    signing_in = area.client.post("/admin/sign-in", data={"token": token})
    assert signing_in.status_code == 403 and "set-cookie" not in signing_in.headers


def test_an_expired_or_altered_token_gets_a_readable_403_page(area: Area) -> None:
    token = area.link(ttl_s=60)
    expiry, signature = token.split(".")
    for altered in (f"{int(expiry) + 86400}.{signature}", token[:-2] + "xx", "", "garbage"):
        reply = area.page(altered)
        assert reply.status_code == 403, altered
        assert "text/html" in reply.headers["content-type"]
        assert "This link is not valid" in Elements(reply.text).text["refusal"]
    area.clock.advance(seconds=60)
    expired = area.page(token)
    assert expired.status_code == 403
    assert "expired" in Elements(expired.text).text["refusal"]
    assert "shop1001" not in expired.text


# --- what the page shows ---------------------------------------------------------------------


def test_the_splash_shows_progress_steps_and_activity_while_provisioning(area: Area) -> None:
    page = elements(area.page(area.link()))
    assert page.visible_screen() == "splash"
    assert page.text["status"].strip() == "provisioning"
    bar = page.attrs["progress-bar"]
    assert (bar["data-done"], bar["data-total"]) == ("1", "2")
    steps = re.findall(r'<li data-step="([^"]+)" data-state="([^"]+)"', area.page(area.link()).text)
    assert steps == [("web.user", "done"), ("mail.domain", "running")]
    assert "order" in page.text["activity"]
    assert area.page(area.link()).headers["content-security-policy"].startswith("default-src")


def test_an_active_service_shows_its_dashboard_with_ssl_and_buttons(area: Area) -> None:
    area.service_changes("mark_active")
    page = elements(area.page(area.link()))
    assert page.visible_screen() == "dashboard"
    assert page.text["status"].strip() == "active"
    assert "hidden" in page.attrs["suspended-notice"]
    assert "sync-now" in page.attrs and "disabled" not in page.attrs["sync-now"]
    html = area.page(area.link()).text
    assert re.search(r'<tr data-role="web" data-state="[a-z]+">', html)
    assert 'class="issue-now"' in html


def test_a_failed_deploy_shows_plain_words_and_try_again_never_the_recorded_reason(
    area: Area,
) -> None:
    mail = area.tasks["mail.domain"]
    mail.fail(
        1,
        area.clock.advance(seconds=1),
        error=HOSTILE,
        retryable=False,
        log=[],
        policy=POLICY,
        unit_random=0,
    )
    area.store.save(mail)
    recorded = f"mail.domain: srv-7 (10.0.3.7:22): v-add-mail-domain alice: {HOSTILE} exited 3"
    area.service_changes("mark_deploy_failed", recorded + " " + "x" * 400)
    reply = area.page(area.link())
    page = elements(reply)
    assert page.visible_screen() == "error-screen"
    assert page.text["error-text"].startswith("We could not finish setting up your email.")
    assert page.text["error-detail"].strip() == TROUBLE_WORDS["refused"]
    for internal in ("srv-7", "10.0.3.7", "v-add-mail-domain", "alice", "alert", "xxxx"):
        assert internal not in reply.text, internal  # staff's, on the console only
    assert "retry-button" in page.attrs
    state = area.state(area.link())
    assert state["screen"] == "error" and state["error"]["detail"] == TROUBLE_WORDS["refused"]
    assert "srv-7" not in json.dumps(state) and "alert" not in json.dumps(state)


def test_a_suspended_service_says_so_shows_no_button_and_refuses_every_write(area: Area) -> None:
    area.service_changes("mark_active")
    area.service_changes("mark_suspended")
    token = area.link()
    reply = area.page(token)
    page = elements(reply)
    assert page.visible_screen() == "dashboard"
    assert "hidden" not in page.attrs["suspended-notice"]
    assert 'class="issue-now"' not in reply.text and "custom-upload" not in reply.text
    assert "hidden" in page.attrs["custom-certificate"]
    before = area.position()
    for path in ("sync-usage", "retry", "ssl/web/issue", "ssl/web/custom/remove"):
        refused = area.act(path, token)
        assert refused.status_code == 403, (path, refused.text)
        assert "suspended" in refused.json()["error"]
    form = area.client.post("/client/1001/sync-usage", data={"token": token})
    assert form.status_code == 403 and "suspended" in Elements(form.text).text["refusal"]
    assert area.position() == before


@pytest.mark.parametrize("stop", ["suspend", "terminate"])
def test_a_suspend_or_terminate_asked_for_stops_every_write_before_the_views_show_it(
    area: Area, stop: str
) -> None:
    area.service_changes("mark_active")
    token = area.link()
    asked = area.client.post(f"/v1/services/1001/{stop}", json={}, headers=AUTH)
    assert asked.status_code == 202, asked.text  # recorded; not projected, not yet run
    assert area.state(token)["status"] == "active"  # the views have not caught up
    before = area.position()
    for path in ("sync-usage", "retry", "ssl/web/issue", "ssl/web/custom/remove"):
        refused = area.act(path, token)
        assert refused.status_code == 403, (path, refused.text)
    assert area.position() == before
    area.project()
    assert area.state(token)["writable"] is False  # the page shows no button either
    for path in ("sync-usage", "ssl/web/issue"):
        assert area.act(path, token).status_code == 403, path
    assert area.position() == before


def test_a_suspension_recorded_but_not_yet_projected_stops_every_write(area: Area) -> None:
    area.service_changes("mark_active")
    token = area.link()
    service = area.store.get_service("1001")
    service.mark_suspended(area.clock.advance(seconds=1))
    area.store.save(service)  # the store has it; the views do not yet
    before = area.position()
    for path in ("sync-usage", "ssl/web/issue"):
        refused = area.act(path, token)
        assert refused.status_code == 403 and "suspended" in refused.json()["error"], path
    assert area.position() == before


# --- what the buttons record -----------------------------------------------------------------


def test_sync_now_and_issue_now_record_what_the_api_records(area: Area) -> None:
    area.service_changes("mark_active")
    token = area.link()
    before = area.position()
    assert area.act("sync-usage", token).status_code == 202
    ((topic, event),) = area.recorded_since(before)
    assert topic == "Service.UsageSyncRequested" and event.actor == "client"
    api = area.position()
    assert area.client.post("/v1/services/1001/sync-usage", headers=AUTH).status_code == 202
    assert [t for t, _ in area.recorded_since(api)] == ["Service.UsageSyncRequested"]

    before = area.position()
    assert area.act("ssl/web/issue", token).status_code == 202
    assert [t for t, _ in area.recorded_since(before)] == ["Certificate.IssueRequested"]
    assert area.book.certificate(certificate_uuid("1001", "web")) is not None

    before = area.position()
    bad = area.act("ssl/web/custom", token, certificate="not a pem", private_key="nor this")
    assert bad.status_code == 422 and area.position() == before
    assert area.act("ssl/nope/issue", token).status_code == 404
    assert area.act("ssl/web/custom/remove", token).status_code == 202  # nothing custom: no-op
    assert area.position() == before

    nothing_failed = area.act("retry", token)
    assert nothing_failed.status_code == 409 and area.position() == before

    redirect = area.client.post("/client/1001/sync-usage", data={"token": token})
    assert redirect.status_code == 303
    assert redirect.headers["location"] == f"/client/1001?token={token}"


def test_a_customers_own_certificate_is_uploaded_and_removed_as_through_the_api(
    area: Area,
) -> None:
    area.service_changes("mark_active")
    token = area.link()
    leaf = area.ca.leaf(["shop1001.example.com"])
    before = area.position()
    uploaded = area.act(
        "ssl/web/custom", token, certificate=leaf.certificate_pem, private_key=leaf.key_pem
    )
    assert uploaded.status_code == 202, uploaded.text
    assert [t for t, _ in area.recorded_since(before)] == ["Certificate.CustomUploaded"]
    area.project()
    page = area.page(token).text
    assert re.search(r'<tr data-role="web" data-state="issued">', page)
    assert 'class="remove-custom' in page and "PRIVATE KEY" not in page
    assert "PRIVATE KEY" not in json.dumps(area.state(token))
    before = area.position()
    assert area.act("ssl/web/custom/remove", token).status_code == 202
    assert [t for t, _ in area.recorded_since(before)] == ["Certificate.CustomRemoved"]


def test_try_again_records_the_retry_of_each_failed_step(area: Area) -> None:
    mail = area.tasks["mail.domain"]
    mail.fail(
        1,
        area.clock.advance(seconds=1),
        error="exit 8",
        retryable=False,
        log=[],
        policy=POLICY,
        unit_random=0,
    )
    area.store.save(mail)
    area.service_changes("mark_deploy_failed", "mail.domain: exit 8")
    token = area.link()
    before = area.position()
    assert area.act("retry", token).status_code == 202
    ((topic, event),) = area.recorded_since(before)
    assert topic == "Task.Retried" and event.originator_id == mail.id
    area.project()
    state = area.state(token)
    assert state["status"] == "deploy_failed" and state["screen"] == "splash"  # it runs again
    again = area.act("retry", token)
    assert again.status_code == 409 and area.position() == before + 1


def test_try_again_never_runs_again_a_step_staff_cancelled(area: Area) -> None:
    mail = area.tasks["mail.domain"]
    mail.fail(
        1,
        area.clock.advance(seconds=1),
        error="exit 8",
        retryable=False,
        log=[],
        policy=POLICY,
        unit_random=0,
    )
    dns = plan("dns.zone", "dns")
    assert dns.cancel(area.clock.advance(seconds=1), "staff")
    area.store.save(mail, dns)
    area.service_changes("mark_deploy_failed", "mail.domain: exit 8")
    token = area.link()
    before = area.position()
    assert area.act("retry", token).status_code == 202
    assert [(t, e.originator_id) for t, e in area.recorded_since(before)] == [
        ("Task.Retried", mail.id)
    ]
    assert area.store.repository(Task, "task").get(dns.id, "dns").state == "cancelled"


def test_the_ledgers_try_again_retries_no_other_services_step(area: Area) -> None:
    other = Task.plan(
        service_id="1002",
        run=1,
        step="mail.domain",
        role="mail",
        action="create mail.domain",
        server_id="mail1",
        params={},
        depends_on=[],
        now=NOW,
    )
    other.dispatch(area.clock.advance(seconds=1), 30)
    other.fail(
        1,
        area.clock.advance(seconds=1),
        error="exit 8",
        retryable=False,
        log=[],
        policy=POLICY,
        unit_random=0,
    )
    area.store.save(other)
    area.service_changes("mark_deploy_failed", "mail.domain: exit 8")
    ledger = StoreLedger(area.store, PasswordSealer(SECRET))
    before = area.position()
    with pytest.raises(Conflict):
        ledger.retry_failed_deploy("1001", [str(other.id)], area.clock(), "client")
    with pytest.raises(NotFound):
        ledger.retry_failed_deploy("9999", [str(other.id)], area.clock(), "client")
    assert area.position() == before


def test_try_again_with_only_cancelled_steps_records_nothing(area: Area) -> None:
    mail = area.tasks["mail.domain"]
    assert mail.cancel(area.clock.advance(seconds=1), "staff")
    area.store.save(mail)
    area.service_changes("mark_deploy_failed", "mail.domain: cancelled")
    token = area.link()
    before = area.position()
    refused = area.act("retry", token)
    assert refused.status_code == 409 and area.position() == before


def test_a_wrong_token_or_a_cross_site_form_records_nothing(area: Area) -> None:
    area.service_changes("mark_active")
    other = area.link("1002")
    before = area.position()
    assert area.act("sync-usage", other).status_code == 403
    assert area.act("ssl/web/issue", "").status_code == 403
    no_token = area.client.post("/client/1001/sync-usage", data={})
    assert no_token.status_code == 403 and "not valid" in no_token.text
    json_body = area.client.post("/client/1001/sync-usage", json={"token": area.link()})
    assert json_body.status_code == 415
    not_utf8 = area.client.post(
        "/client/1001/sync-usage",
        content=b"token=%FF%FE",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert not_utf8.status_code == 400
    assert area.position() == before


# --- live ------------------------------------------------------------------------------------


def test_the_live_stream_sends_a_state_when_the_views_change_until_the_link_expires(
    area: Area,
) -> None:
    token = area.link()
    refused = area.client.get("/client/1002/live", params={"token": token})
    assert refused.status_code == 403

    async def scenario() -> None:
        stream = EventStreamReader(area.app, f"/client/1001/live?token={token}")
        try:
            event, data = await stream.next_event(timeout=10)
            assert stream.status == 200
            first = json.loads(data)
            assert (event, first["screen"], first["progress"]) == (
                "state",
                "splash",
                {"done": 1, "total": 2},
            )
            await asyncio.to_thread(area.service_changes, "mark_active")
            changed = await state_with(stream, "active")
            assert changed["screen"] == "dashboard"
            area.clock.advance(minutes=61)  # the link's hour is over
            await asyncio.to_thread(area.service_changes, "mark_suspended")
            event, data = await stream.next_event(timeout=10)
            assert event == "refused" and "expired" in json.loads(data)["error"]
        finally:
            await stream.close()

    asyncio.run(scenario())


def test_a_certificates_change_wakes_its_services_pages_though_the_service_did_not_change(
    area: Area,
) -> None:
    """The SSL view keeps no position per row: the live source finds its change by time."""
    area.service_changes("mark_active")
    changes = SqlLiveChanges(area.db)
    start, nothing = changes.changes_after(None)
    assert nothing == set()
    assert area.client.post("/v1/services/1001/ssl/web/issue", headers=AUTH).status_code == 202
    area.project()
    moved, changed = changes.changes_after(start)
    assert moved > start and changed == {"1001"}
    row = SqlViewQueries(area.db).service("1001")
    assert row is not None and row["last_position"] <= start  # the SSL view told, not it
    assert changes.changes_after(moved) == (moved, set())
    area.clock.advance(seconds=1)
    assert area.client.post("/v1/services/1002/sync-usage", headers=AUTH).status_code == 202
    area.project()
    _, only_the_other = changes.changes_after(moved)
    assert only_the_other == {"1002"}  # the certificate seen once is not reported again


async def state_with(stream: EventStreamReader, status: str) -> dict[str, Any]:
    """The first state the stream sends with ``status`` (a running step's time, moving on,
    may send another before it)."""
    while True:
        event, data = await stream.next_event(timeout=10)
        assert event == "state"
        state: dict[str, Any] = json.loads(data)
        if state["status"] == status:
            return state


class CountingViews:
    """The real views, counting the timeline reads (one per state a page is sent)."""

    def __init__(self, views: SqlViewQueries) -> None:
        self._views = views
        self.timeline_reads = 0

    def timeline(self, service_id: str) -> list[dict[str, Any]] | None:
        self.timeline_reads += 1
        return self._views.timeline(service_id)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._views, name)


def test_the_open_pages_of_a_service_cost_one_read_per_change(area: Area) -> None:
    views = CountingViews(SqlViewQueries(area.db))
    app = create_app(
        ledger=StoreLedger(area.store, PasswordSealer(SECRET)),
        views=views,  # type: ignore[arg-type]
        credentials=credentials_for_tests(),
        clock=area.clock,
        live=SqlLiveChanges(area.db),
        signing_key=KEY,
    )
    token = area.link()

    async def scenario() -> None:
        pages = [EventStreamReader(app, f"/client/1001/live?token={token}") for _ in range(5)]
        try:
            for stream in pages:
                assert (await stream.next_event(timeout=10))[0] == "state"
            assert views.timeline_reads >= len(pages)  # each page's own first read
            for change, status in (("mark_active", "active"), ("mark_suspended", "suspended")):
                before = views.timeline_reads
                await asyncio.to_thread(area.service_changes, change)
                for stream in pages:
                    await state_with(stream, status)
            # the feed had started by the second change: one read for the five pages
            assert views.timeline_reads == before + 1
        finally:
            for stream in pages:
                await stream.close()

    asyncio.run(scenario())
