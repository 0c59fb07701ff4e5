"""Scoped credentials and the explicit re-key, over a real event store (SQLite file), the real
StoreLedger, server registry, settings book and views.

Every refusal must be a 4xx JSON error that records nothing (the store's notification id is
compared before and after); what a credential records carries its name as the actor.
"""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncssh
import pytest
from starlette.applications import Starlette

from domain.server import Server
from domain.service import service_uuid
from gateway.app import create_app
from gateway.credentials import Credentials
from handlers.pipeline_attempts import SCHEDULER
from ops.adapters.command_ledger import StoreLedger
from ops.adapters.node_directory import RegistryDirectory
from ops.adapters.sealing import PasswordSealer
from ops.adapters.server_registry import ServerRegistry
from ops.adapters.settings_book import StoreSettingsBook, runtime_defaults
from ops.credentials import RESERVED_NAMES, credentials_from, new_token_lines
from ops.settings import Settings, SettingsError
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
    STAFF_TOKEN,
    START,
    TOKEN,
    Client,
    assert_readable_error,
    credentials_for_tests,
    order,
    serving,
)

ROOT = Path(__file__).resolve().parents[2]


def host_key() -> str:
    return asyncssh.generate_private_key("ssh-ed25519").export_public_key().decode().strip()


NODE_KEY, ATTACKER_KEY = host_key(), host_key()


def node(**changes: Any) -> dict[str, Any]:
    body = {
        "server_id": "web1",
        "roles": ["web"],
        "host": "web1.nodes.example.net",
        "port": 22,
        "username": "hostwright",
        "host_key": NODE_KEY,
        "ip": "192.0.2.10",
        "max_concurrency": 4,
    }
    return {**body, **changes}


@dataclass
class Api:
    app: Starlette
    client: Client
    store: EventStore
    db: Database
    registry: ServerRegistry

    def recorded(self) -> int:
        return self.store.max_notification_id()

    def project(self) -> None:
        views = all_views()
        ProjectionRunner(self.store, ViewStore(self.db, views), views).catch_up()

    def events(self, after: int) -> list[Any]:
        return [self.store.decode(n) for n in self.store.notifications(after, 100)]


def start_api(sqlite_url: str, credentials: Credentials) -> Iterator[Api]:
    store, db = EventStore(sqlite_url), Database(sqlite_url)
    registry = ServerRegistry(store, ttl=60.0)
    app = create_app(
        ledger=StoreLedger(store, PasswordSealer("a-secret-key-only-for-tests")),
        views=SqlViewQueries(db),
        credentials=credentials,
        clock=Clock(START),
        servers=registry,
        settings=StoreSettingsBook(store, runtime_defaults(Settings())),
    )
    try:
        with serving(app) as client:
            yield Api(app, client, store, db, registry)
    finally:
        store.close()
        db.close()


@pytest.fixture
def api(sqlite_url: str) -> Iterator[Api]:
    """Service 1001 ordered by WHMCS and node web1 registered by staff."""
    for setup in start_api(sqlite_url, credentials_for_tests()):
        assert setup.client.post("/v1/services", json=order(), headers=AUTH).status_code == 202
        assert setup.client.post("/v1/servers", json=node(), headers=STAFF).status_code == 202
        setup.project()
        yield setup


STAFF_CALLS = [
    ("POST", "/v1/servers", node(server_id="web2")),
    ("POST", "/v1/servers/web1/rekey", {"host_key": ATTACKER_KEY}),
    ("GET", "/v1/servers", None),
    ("PUT", "/v1/settings", {"batch_size": 7}),
    ("GET", "/v1/settings", None),
    ("POST", "/v1/tasks/bulk", {"action": "delete_succeeded"}),
    ("POST", "/v1/tasks/5f0c6b3e-8a51-4a4e-9b9e-0d6f7d7f3c11/retry", None),
    ("POST", "/v1/tasks/5f0c6b3e-8a51-4a4e-9b9e-0d6f7d7f3c11/cancel", None),
    ("GET", "/v1/tasks", None),
]


@pytest.mark.parametrize(("method", "path", "body"), STAFF_CALLS)
def test_a_whmcs_token_cannot_touch_servers_settings_or_tasks_and_nothing_is_recorded(
    api: Api, method: str, path: str, body: Any
) -> None:
    before = api.recorded()
    reply = api.client.request(method, path, json=body, headers=AUTH)
    assert_readable_error(reply, 403)
    assert reply.json()["error"].startswith(f"this credential may not call {method} ")
    assert "staff" in reply.json()["error"]
    assert TOKEN not in reply.text
    assert api.recorded() == before


def test_a_whmcs_token_cannot_redirect_a_server_to_another_host(api: Api) -> None:
    before = api.recorded()
    moved = node(host="203.0.113.66", host_key=ATTACKER_KEY)
    assert_readable_error(api.client.post("/v1/servers", json=moved, headers=AUTH), 403)
    # not even staff moves a node by registering it again: that is the explicit re-key
    for changes in ({"host": "203.0.113.66"}, {"port": 2222}, {"host_key": ATTACKER_KEY}):
        reply = api.client.post("/v1/servers", json=node(**changes), headers=STAFF)
        assert_readable_error(reply, 409)
        assert "/v1/servers/web1/rekey" in reply.json()["error"]
    assert api.recorded() == before
    api.registry.refresh()
    web1 = api.registry.get("web1")
    assert (web1.host, web1.port, web1.host_key) == ("web1.nodes.example.net", 22, NODE_KEY)


def test_registering_a_node_again_unchanged_records_nothing_and_other_fields_still_update(
    api: Api,
) -> None:
    before = api.recorded()
    assert api.client.post("/v1/servers", json=node(), headers=STAFF).status_code == 202
    assert api.recorded() == before
    reply = api.client.post("/v1/servers", json=node(max_concurrency=8), headers=STAFF)
    assert reply.status_code == 202, reply.text
    [event] = api.events(before)
    assert isinstance(event, Server.Updated)
    assert (event.changed, event.actor) == (["max_concurrency"], "staff")


def test_staff_rekey_records_old_and_new_fingerprints_and_the_new_key_is_used(api: Api) -> None:
    directory = RegistryDirectory(api.registry, "/keys/id_ed25519")
    old_fingerprint = asyncssh.import_public_key(NODE_KEY).get_fingerprint("sha256")
    new_key = host_key()
    new_fingerprint = asyncssh.import_public_key(new_key).get_fingerprint("sha256")
    before = api.recorded()

    body = {"host": "web1b.nodes.example.net", "host_key": new_key + " root@web1b"}
    reply = api.client.post("/v1/servers/web1/rekey", json=body, headers=STAFF)

    assert (reply.status_code, reply.json()) == (
        200,
        {
            "result": "success",
            "server_id": "web1",
            "changed": True,
            "previous_fingerprint": old_fingerprint,
            "fingerprint": new_fingerprint,
        },
    )
    [event] = api.events(before)
    assert isinstance(event, Server.Rekeyed)
    assert (event.previous_fingerprint, event.fingerprint, event.actor) == (
        old_fingerprint,
        new_fingerprint,
        "staff",
    )
    assert (event.previous_host, event.host, event.port, event.changed) == (
        "web1.nodes.example.net",
        "web1b.nodes.example.net",
        22,
        ["host", "host_key"],
    )
    [listed] = api.client.get("/v1/servers", headers=STAFF).json()["servers"]
    assert (listed["host"], listed["host_key_fingerprint"]) == (body["host"], new_fingerprint)
    access = asyncio.run(directory.node_access("web1"))
    assert access is not None
    assert (access.host, access.port, access.host_key) == ("web1b.nodes.example.net", 22, new_key)
    # the same re-key again changes nothing and records nothing
    after = api.recorded()
    again = api.client.post("/v1/servers/web1/rekey", json=body, headers=STAFF)
    assert (again.status_code, again.json()["changed"]) == (200, False)
    assert api.recorded() == after


@pytest.mark.parametrize(
    ("path", "body", "status"),
    [
        ("/v1/servers/web9/rekey", {"port": 2222}, 404),
        ("/v1/servers/web1/rekey", {}, 422),
        ("/v1/servers/web1/rekey", {"host_key": "ssh-ed25519 AAAA"}, 422),
        ("/v1/servers/web1/rekey", {"host": "a;b"}, 422),
        ("/v1/servers/web1/rekey", {"roles": ["mail"]}, 422),
        ("/v1/servers/web1/rekey", [1], 400),
    ],
)
def test_a_bad_rekey_is_refused_and_records_nothing(
    api: Api, path: str, body: Any, status: int
) -> None:
    before = api.recorded()
    assert_readable_error(api.client.post(path, json=body, headers=STAFF), status)
    assert api.recorded() == before


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("POST", "/v1/services", order(service_id=1002, domain="two.example.com")),
        ("POST", "/v1/services/1001/suspend", {}),
        *[call for call in STAFF_CALLS if call[0] != "GET"],
    ],
)
def test_a_read_token_cannot_post(api: Api, method: str, path: str, body: Any) -> None:
    before = api.recorded()
    reply = api.client.request(method, path, json=body, headers=READER)
    assert_readable_error(reply, 403)
    assert api.recorded() == before


@pytest.mark.parametrize(
    "path",
    [
        "/v1/services/1001",
        "/v1/services/1001/events",
        "/v1/services/1001/timeline",
        "/v1/oplog",
        "/v1/tasks",
        "/v1/servers",
        "/v1/settings",
    ],
)
def test_a_read_token_reads_everything(api: Api, path: str) -> None:
    reply = api.client.get(path, headers=READER)
    assert reply.status_code == 200, reply.text


def test_staff_may_call_the_whmcs_routes_and_is_recorded_as_staff(api: Api) -> None:
    before = api.recorded()
    reply = api.client.post("/v1/services/1001/suspend", json={}, headers=STAFF)
    assert reply.status_code == 202, reply.text
    [event] = api.events(before)
    assert (event.originator_id, event.actor) == (service_uuid("1001"), "staff")


def test_a_tokens_file_credential_works_and_its_name_is_the_actor(
    sqlite_url: str, tmp_path: Path
) -> None:
    billing, billing_line = new_token_lines("billing", ["services"])
    grafana, grafana_line = new_token_lines("grafana", ["read"])
    tokens_file = tmp_path / "tokens"
    tokens_file.write_text(f"# name scopes hash\n{billing_line}\n\n{grafana_line}\n")
    assert billing not in tokens_file.read_text() and grafana not in tokens_file.read_text()
    settings = Settings(api_token=TOKEN, staff_token=STAFF_TOKEN, tokens_file=str(tokens_file))
    for api in start_api(sqlite_url, credentials_from(settings)):
        before = api.recorded()
        reply = api.client.post(
            "/v1/services", json=order(), headers={"Authorization": f"Bearer {billing}"}
        )
        assert reply.status_code == 202, reply.text
        [ordered] = [e for e in api.events(before) if type(e).__qualname__ == "Service.Ordered"]
        assert ordered.actor == "billing"
        reply = api.client.request("PUT", "/v1/settings", json={"batch_size": 9}, headers=STAFF)
        assert reply.status_code == 200, reply.text
        assert api.events(before)[-1].actor == "staff"
        dashboard = {"Authorization": f"Bearer {grafana}"}
        assert api.client.get("/v1/settings", headers=dashboard).status_code == 200
        assert_readable_error(
            api.client.request("PUT", "/v1/settings", json={}, headers=dashboard), 403
        )
        assert_readable_error(
            api.client.get("/v1/settings", headers={"Authorization": "Bearer " + "x" * 43}), 401
        )


def test_every_v1_route_declares_the_scope_it_needs(sqlite_url: str) -> None:
    for api in start_api(sqlite_url, credentials_for_tests()):
        routes: list[Any] = api.app.routes
        guarded = {
            (route.path, tuple(sorted(route.methods or ()))): hasattr(route.endpoint, "need")
            for route in routes
            if route.path.startswith("/v1")
        }
        assert len(guarded) >= 15
        assert all(guarded.values()), [path for path, ok in guarded.items() if not ok]


def serve_gateway(tmp_path: Path, **variables: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HOSTWRIGHT_")}
    env.update(
        {
            "HOSTWRIGHT_DATABASE_URL": f"sqlite:///{tmp_path / 'store.sqlite'}",
            "HOSTWRIGHT_LISTEN": "127.0.0.1:0",
            "HOSTWRIGHT_SECRET_KEY": "a-secret-key-only-for-tests-0123456789",
            # `serve` refuses to run without a broker; every case here stops before using it
            "HOSTWRIGHT_AMQP_URL": "amqp://guest:guest@127.0.0.1:1/",
            **variables,
        }
    )
    return subprocess.run(
        [sys.executable, "-m", "ops.cli", "serve", "gateway"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize(
    ("variable", "token"),
    [
        ("HOSTWRIGHT_API_TOKEN", "t0ken-for-tests-0123456789"),
        ("HOSTWRIGHT_STAFF_TOKEN", "x" * 31),
    ],
)
def test_a_short_token_stops_the_gateway_at_start_with_one_line(
    tmp_path: Path, variable: str, token: str
) -> None:
    done = serve_gateway(tmp_path, **{variable: token})
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip().splitlines() == [
        f"hostwright: {variable} must be at least 32 characters "
        "(make one with `openssl rand -hex 24`)"
    ]
    assert token not in done.stderr


def test_a_tokens_file_naming_whmcs_again_stops_the_gateway_at_start(tmp_path: Path) -> None:
    _, line = new_token_lines("whmcs", ["staff"])
    (tmp_path / "tokens").write_text(line + "\n")
    done = serve_gateway(
        tmp_path, HOSTWRIGHT_API_TOKEN=TOKEN, HOSTWRIGHT_TOKENS_FILE=str(tmp_path / "tokens")
    )
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip().splitlines() == [
        "hostwright: credentials: credential name(s) given twice: whmcs"
    ]


def test_a_tokens_file_credential_named_as_a_system_actor_stops_the_gateway_at_start(
    tmp_path: Path,
) -> None:
    (tmp_path / "tokens").write_text(f"scheduler staff {HASH}\n")
    done = serve_gateway(
        tmp_path, HOSTWRIGHT_API_TOKEN=TOKEN, HOSTWRIGHT_TOKENS_FILE=str(tmp_path / "tokens")
    )
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip().splitlines() == [
        f"hostwright: {tmp_path / 'tokens'}, line 1: the name 'scheduler' is reserved: the "
        "system records it as the actor of its own events (reserved: "
        f"{', '.join(sorted(RESERVED_NAMES))})"
    ]


def test_every_actor_the_code_records_is_reserved() -> None:
    assert SCHEDULER in RESERVED_NAMES
    assert "pipeline" in RESERVED_NAMES  # "pipeline: superseded by a newer run"
    with pytest.raises(ValueError, match="reserved"):
        new_token_lines("scheduler", ["read"])


def test_hostwright_token_new_prints_the_token_once_and_the_line_that_resolves_it(
    tmp_path: Path,
) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "ops.cli", "token", "new", "--name", "grafana", "--scope", "read"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    token_line, file_line = done.stdout.strip().splitlines()
    token = token_line.removeprefix("token: ")
    line = file_line.removeprefix("add to HOSTWRIGHT_TOKENS_FILE: ")
    assert len(token) >= 32 and token not in line
    (tmp_path / "tokens").write_text(line + "\n")
    table = credentials_from(Settings(tokens_file=str(tmp_path / "tokens")))
    principal = table.resolve(token.encode())
    assert principal is not None
    assert (principal.name, principal.scopes) == ("grafana", frozenset({"read"}))


HASH = "sha256:" + "0" * 64


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        (f"grafana read {HASH}\ngrafana services {'sha256:' + '1' * 64}\n", "given twice"),
        (f"whmcs read {HASH}\n", "given twice"),  # the environment's WHMCS credential
        (f"# ok\n\ngrafana read {HASH} extra\n", "line 3: a credential is"),
        (f"grafana write {HASH}\n", "line 1: unknown scope(s) write"),
        ("grafana read sha256:abc\n", "line 1: the token's hash"),
        (f"grafana read {'x' * 32}\n", "line 1: the token's hash"),  # a token, not a hash
        (f"Grafana read {HASH}\n", "line 1: a name is"),
        (f"scheduler staff {HASH}\n", "line 1: the name 'scheduler' is reserved"),
        (f"# ok\npipeline read {HASH}\n", "line 2: the name 'pipeline' is reserved"),
        (f"system read {HASH}\n", "line 1: the name 'system' is reserved"),
    ],
)
def test_a_bad_tokens_file_is_refused_naming_the_line(
    tmp_path: Path, text: str, problem: str
) -> None:
    (tmp_path / "tokens").write_text(text)
    settings = Settings(api_token=TOKEN, tokens_file=str(tmp_path / "tokens"))
    with pytest.raises(SettingsError, match=re.escape(problem)):
        credentials_from(settings)


def test_a_missing_tokens_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="cannot read HOSTWRIGHT_TOKENS_FILE"):
        credentials_from(Settings(tokens_file=str(tmp_path / "absent")))
