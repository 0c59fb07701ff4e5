"""``GET|PUT /v1/settings`` over a real event store (SQLite file and PostgreSQL), the real
StoreSettingsBook, and the RuntimeSettingsReader the running parts use.

A valid change records ``RuntimeSettings.Changed`` (the first one after ``Adopted``, the
baseline, in the same save); every refusal is a 4xx JSON error that records nothing: the
store's notification id and the settings GET shows are compared before and after each call.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from domain.retry_policy import RetryPolicy
from domain.runtime_settings import (
    SETTINGS_ID,
    RuntimeSettings,
    RuntimeSettingsValues,
    parse_settings_update,
)
from domain.ticket import TicketConfig
from gateway.app import create_app
from gateway.ports import SettingsBook
from ops.adapters.command_ledger import StoreLedger
from ops.adapters.runtime_settings_reader import RuntimeSettingsReader
from ops.adapters.sealing import PasswordSealer
from ops.adapters.server_registry import ServerRegistry
from ops.adapters.settings_book import StoreSettingsBook, runtime_defaults
from ops.bootstrap import System
from ops.settings import Settings, SettingsError
from ops.store.event_store import EventStore, event_topic
from tests.fakes.clock import Clock, SecondsClock
from tests.fakes.view_queries import FakeViews
from tests.support.gateway import (
    STAFF,
    STAFF_TOKEN,
    START,
    TOKEN,
    Client,
    assert_readable_error,
    credentials_for_tests,
    serving,
)

DEFAULTS = runtime_defaults(Settings())
ED25519 = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKvkcWkh33XP+nVwAr39SKD2LH3ynKCVGsuxXwfRfERU"
DEFAULT_DOCUMENT = {
    "retry": {"max_attempts": 5, "initial_backoff_s": 5.0, "max_backoff_s": 600.0},
    "concurrency": {"default": 1, "per_server": {}},
    "batch_size": 200,
    "tickets": {"enabled": False, "department_id": 1, "priority": "Medium"},
    "queue": {"stuck_after_s": 120.0, "clean_completed_after_s": 604800.0},
    "ssl": {
        "fast_attempts": 10,
        "fast_interval_s": 30,
        "recheck_interval_s": 3600,
        "active_interval_s": 86400,
        "freeze_after_failures": 5,
        "freeze_s": 21600,
    },
    "usage": {"period_s": 3600, "fresh_s": 60},
}


@pytest.fixture
def store(database_url: str) -> Iterator[EventStore]:
    event_store = EventStore(database_url)
    yield event_store
    event_store.close()


@pytest.fixture
def clock() -> Clock:
    return Clock(START)


@pytest.fixture
def book(store: EventStore) -> StoreSettingsBook:
    return StoreSettingsBook(store, DEFAULTS)


def settings_app(store: EventStore, book: StoreSettingsBook, clock: Clock, whmcs_api: bool) -> Any:
    return create_app(
        ledger=StoreLedger(store, PasswordSealer("a-secret-key-only-for-tests")),
        views=FakeViews(),
        credentials=credentials_for_tests(),
        clock=clock,
        servers=ServerRegistry(store),
        settings=book,
        whmcs_api=whmcs_api,
    )


@pytest.fixture
def client(store: EventStore, book: StoreSettingsBook, clock: Clock) -> Iterator[Client]:
    with serving(settings_app(store, book, clock, whmcs_api=True)) as test_client:
        yield test_client


def register(client: Client, *server_ids: str) -> None:
    """Registers the nodes through ``POST /v1/servers``, as staff do."""
    for server_id in server_ids:
        body = {
            "server_id": server_id,
            "roles": ["web"],
            "host": f"{server_id}.example.net",
            "port": 22,
            "username": "root",
            "host_key": ED25519,
            "ip": "192.0.2.10",
            "max_concurrency": 4,
        }
        reply = client.post("/v1/servers", json=body, headers=STAFF)
        assert reply.status_code in (200, 201, 202), reply.text


def put(client: Client, body: Any) -> Any:
    return client.request("PUT", "/v1/settings", json=body, headers=STAFF)


def shown(client: Client) -> dict[str, Any]:
    reply = client.get("/v1/settings", headers=STAFF)
    assert reply.status_code == 200, reply.text
    settings: dict[str, Any] = reply.json()["settings"]
    return settings


def events_since(store: EventStore, after: int) -> list[Any]:
    return [store.decode(n) for n in store.notifications(after, 100)]


# --- reading and changing -------------------------------------------------------------------


def test_get_shows_the_defaults_and_records_nothing(client: Client, store: EventStore) -> None:
    assert shown(client) == DEFAULT_DOCUMENT
    assert store.max_notification_id() == 0


def test_the_defaults_follow_the_process_settings(store: EventStore, clock: Clock) -> None:
    process = Settings(
        retry_max_attempts=3,
        retry_initial_backoff_s=2.5,
        retry_max_backoff_s=40.0,
        dispatch_batch=50,
        tickets_enabled=True,
        tickets_department_id=6,
        tickets_priority="Low",
        lease_s=30.0,
        clean_completed_after_s=3600.0,
    )
    book = StoreSettingsBook(store, runtime_defaults(process))
    values = book.current()
    assert values.policy() == RetryPolicy(max_attempts=3, initial_backoff_s=2.5, max_backoff_s=40)
    assert values.batch_size == 50
    assert values.tickets == TicketConfig(enabled=True, department_id=6, priority="Low")
    assert (values.queue.stuck_after_s, values.queue.clean_completed_after_s) == (60.0, 3600.0)
    explicit = runtime_defaults(Settings(stuck_after_s=300.0))
    assert explicit.queue.stuck_after_s == 300.0


def test_process_settings_out_of_bounds_are_a_settings_error() -> None:
    with pytest.raises(SettingsError, match="batch_size"):
        runtime_defaults(Settings(dispatch_batch=50_000))
    with pytest.raises(SettingsError, match=r"tickets\.priority"):
        runtime_defaults(Settings(tickets_priority="urgent"))
    with pytest.raises(SettingsError, match=r"max_backoff_s .* at least"):
        runtime_defaults(Settings(retry_initial_backoff_s=30.0, retry_max_backoff_s=10.0))
    with pytest.raises(SettingsError, match=r"usage\.fresh_s \(120\) must be at most"):
        runtime_defaults(Settings(usage_period_s=60.0, usage_fresh_s=120))


def test_a_valid_put_is_recorded_once_and_shown(client: Client, store: EventStore) -> None:
    change = {
        "retry": {"max_attempts": 8, "initial_backoff_s": 1.5},
        "concurrency": {"per_server": {"web1": 3, "dns2": 10}},
        "tickets": {"enabled": True, "department_id": 4, "priority": "High"},
    }
    register(client, "web1", "dns2")
    registered = store.max_notification_id()
    reply = put(client, change)
    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert body["result"] == "success"
    assert body["changed"] == [
        "retry.max_attempts",
        "retry.initial_backoff_s",
        "concurrency.per_server",
        "tickets.enabled",
        "tickets.department_id",
        "tickets.priority",
    ]
    expected = {
        **DEFAULT_DOCUMENT,
        "retry": {"max_attempts": 8, "initial_backoff_s": 1.5, "max_backoff_s": 600.0},
        "concurrency": {"default": 1, "per_server": {"dns2": 10, "web1": 3}},
        "tickets": {"enabled": True, "department_id": 4, "priority": "High"},
    }
    assert body["settings"] == expected
    assert shown(client) == expected

    recorded = events_since(store, registered)
    assert [event_topic(e) for e in recorded] == [
        "RuntimeSettings.Adopted",
        "RuntimeSettings.Changed",
    ]
    adopted, changed = recorded
    assert adopted.values == DEFAULT_DOCUMENT  # the baseline the change started from
    assert changed.values == expected
    assert changed.changed == body["changed"]
    assert changed.actor == "staff"
    assert changed.timestamp == START

    count = store.max_notification_id()
    reply = put(client, {"batch_size": 20})
    assert reply.json()["changed"] == ["batch_size"]
    assert [event_topic(e) for e in events_since(store, count)] == ["RuntimeSettings.Changed"]
    assert shown(client) == {**expected, "batch_size": 20}


def test_an_ssl_change_is_recorded_and_shown(client: Client, store: EventStore) -> None:
    reply = put(client, {"ssl": {"fast_attempts": 4, "freeze_s": 3600}})
    assert reply.status_code == 200, reply.text
    assert reply.json()["changed"] == ["ssl.fast_attempts", "ssl.freeze_s"]
    ssl = {**DEFAULT_DOCUMENT["ssl"], "fast_attempts": 4, "freeze_s": 3600}
    assert shown(client) == {**DEFAULT_DOCUMENT, "ssl": ssl}


def _as_version_1(store: EventStore, event: Any) -> Any:
    """The event as it was stored before the ``ssl`` section existed."""
    mapper = store.app.mapper
    stored = mapper.to_stored_event(event)
    state = mapper.transcoder.decode(stored.state)
    assert state.pop("class_version") == 3
    del state["values"]["ssl"]
    del state["values"]["usage"]
    return dataclasses.replace(stored, state=mapper.transcoder.encode(state))


def test_settings_changed_before_the_ssl_section_still_load_and_change(
    store: EventStore, database_url: str
) -> None:
    old = RuntimeSettings.adopt(DEFAULTS, START, "admin")
    old.change(parse_settings_update({"batch_size": 33}), START, "admin")
    store.recorder.insert_events([_as_version_1(store, e) for e in old.collect_events()])

    book = StoreSettingsBook(store, DEFAULTS)
    values = book.current()
    assert values.batch_size == 33 and values.ssl == DEFAULTS.ssl
    applied = book.change(parse_settings_update({"ssl": {"fast_attempts": 2}}), START, "admin")
    assert applied.changed == ["ssl.fast_attempts"]
    reopened = EventStore(database_url)
    try:
        again = StoreSettingsBook(reopened, DEFAULTS).current()
        events = [reopened.decode(n) for n in reopened.notifications(0, 10)]
    finally:
        reopened.close()
    assert (again.batch_size, again.ssl.fast_attempts) == (33, 2)
    assert [e.values["ssl"]["fast_attempts"] for e in events] == [10, 10, 2]


def test_the_recorded_settings_survive_a_new_store(
    client: Client, store: EventStore, database_url: str
) -> None:
    assert put(client, {"queue": {"stuck_after_s": 120}}).status_code == 200
    reopened = EventStore(database_url)
    try:
        values = StoreSettingsBook(reopened, DEFAULTS).current()
    finally:
        reopened.close()
    assert values.queue.stuck_after_s == 120.0
    assert values.as_json() == shown(client)


def test_a_repeated_identical_put_records_nothing(client: Client, store: EventStore) -> None:
    change = {"retry": {"max_attempts": 2}, "batch_size": 7}
    assert put(client, change).json()["changed"] == ["retry.max_attempts", "batch_size"]
    count = store.max_notification_id()
    reply = put(client, change)
    assert reply.status_code == 200
    assert reply.json()["changed"] == []
    assert put(client, shown(client)).json()["changed"] == []  # GET's document, sent back
    assert put(client, {}).json()["changed"] == []
    assert store.max_notification_id() == count


def test_putting_the_defaults_back_before_any_change_records_nothing(
    client: Client, store: EventStore
) -> None:
    reply = put(client, DEFAULT_DOCUMENT)
    assert reply.status_code == 200
    assert reply.json()["changed"] == []
    assert store.max_notification_id() == 0


def test_a_per_server_map_replaces_the_previous_one(client: Client) -> None:
    register(client, "web1", "web2")
    put(client, {"concurrency": {"per_server": {"web1": 3, "web2": 4}}})
    put(client, {"concurrency": {"per_server": {"web2": 5}}})
    assert shown(client)["concurrency"]["per_server"] == {"web2": 5}
    put(client, {"concurrency": {"per_server": {}}})
    assert shown(client)["concurrency"]["per_server"] == {}


# --- refusals -------------------------------------------------------------------------------

INVALID: list[tuple[str, Any, str]] = [
    # (case, body, a word the error must name)
    ("negative back-off", {"retry": {"initial_backoff_s": -1}}, "retry.initial_backoff_s"),
    ("zero back-off", {"retry": {"initial_backoff_s": 0}}, "retry.initial_backoff_s"),
    ("negative max back-off", {"retry": {"max_backoff_s": -5.0}}, "retry.max_backoff_s"),
    ("zero attempts", {"retry": {"max_attempts": 0}}, "retry.max_attempts"),
    ("too many attempts", {"retry": {"max_attempts": 101}}, "retry.max_attempts"),
    ("attempts as a string", {"retry": {"max_attempts": "3"}}, "retry.max_attempts"),
    ("attempts as a fraction", {"retry": {"max_attempts": 2.5}}, "retry.max_attempts"),
    ("attempts as a bool", {"retry": {"max_attempts": True}}, "retry.max_attempts"),
    ("back-off as a string", {"retry": {"initial_backoff_s": "5"}}, "retry.initial_backoff_s"),
    ("back-off over a day", {"retry": {"max_backoff_s": 86_401}}, "retry.max_backoff_s"),
    (
        "max below initial",
        {"retry": {"initial_backoff_s": 30, "max_backoff_s": 10}},
        "retry.max_backoff_s",
    ),
    ("initial above the current max", {"retry": {"initial_backoff_s": 900}}, "max_backoff_s"),
    ("unknown top-level key", {"retries": {"max_attempts": 3}}, "retries"),
    ("unknown key in a section", {"retry": {"jitter": 0.1}}, "retry.jitter"),
    ("the GET wrapper", {"settings": DEFAULT_DOCUMENT}, "settings"),
    ("section not an object", {"retry": 3}, "retry"),
    ("bad server id", {"concurrency": {"per_server": {"Web_1": 2}}}, "per_server"),
    ("server id with a shell", {"concurrency": {"per_server": {"a;b": 2}}}, "per_server"),
    ("zero per-server limit", {"concurrency": {"per_server": {"web1": 0}}}, "per_server.web1"),
    ("per-server over the cap", {"concurrency": {"per_server": {"web1": 65}}}, "web1"),
    ("per-server not a map", {"concurrency": {"per_server": ["web1"]}}, "per_server"),
    ("zero default concurrency", {"concurrency": {"default": 0}}, "concurrency.default"),
    ("zero batch size", {"batch_size": 0}, "batch_size"),
    ("huge batch size", {"batch_size": 10_001}, "batch_size"),
    ("batch size null", {"batch_size": None}, "batch_size"),
    ("bad priority", {"tickets": {"priority": "Urgent"}}, "tickets.priority"),
    ("lowercase priority", {"tickets": {"priority": "high"}}, "tickets.priority"),
    ("zero department", {"tickets": {"department_id": 0}}, "tickets.department_id"),
    ("enabled as a string", {"tickets": {"enabled": "yes"}}, "tickets.enabled"),
    ("enabled as a number", {"tickets": {"enabled": 1}}, "tickets.enabled"),
    ("zero stuck-after", {"queue": {"stuck_after_s": 0}}, "queue.stuck_after_s"),
    ("negative clean-after", {"queue": {"clean_completed_after_s": -1}}, "clean_completed"),
    ("fast checks too close", {"ssl": {"fast_interval_s": 1}}, "ssl.fast_interval_s"),
    ("fast interval a fraction", {"ssl": {"fast_interval_s": 7.5}}, "ssl.fast_interval_s"),
    ("negative fast attempts", {"ssl": {"fast_attempts": -3}}, "ssl.fast_attempts"),
    ("recheck below fast", {"ssl": {"recheck_interval_s": 60, "fast_interval_s": 120}}, "recheck"),
    ("active over a day", {"ssl": {"active_interval_s": 172_800}}, "ssl.active_interval_s"),
    ("freeze after zero", {"ssl": {"freeze_after_failures": 0}}, "ssl.freeze_after_failures"),
    ("freeze over a week", {"ssl": {"freeze_s": 700_000}}, "ssl.freeze_s"),
    ("freeze as a string", {"ssl": {"freeze_s": "6h"}}, "ssl.freeze_s"),
    ("unknown ssl key", {"ssl": {"profile": "shortlived"}}, "ssl.profile"),
]


@pytest.mark.parametrize(("case", "body", "named"), INVALID, ids=[c for c, _, _ in INVALID])
def test_invalid_settings_are_422_and_change_nothing(
    client: Client, store: EventStore, case: str, body: Any, named: str
) -> None:
    assert put(client, {"batch_size": 99}).status_code == 200  # a recorded state to keep
    count, before = store.max_notification_id(), shown(client)
    reply = put(client, body)
    assert_readable_error(reply, 422)
    assert named in reply.json()["error"]
    assert store.max_notification_id() == count
    assert shown(client) == before


def test_an_invalid_first_put_records_not_even_the_baseline(
    client: Client, store: EventStore
) -> None:
    reply = put(client, {"batch_size": 50, "retry": {"max_attempts": 0}})
    assert_readable_error(reply, 422)
    assert store.max_notification_id() == 0
    assert shown(client) == DEFAULT_DOCUMENT


def test_a_limit_for_a_server_not_registered_is_422_naming_it(
    client: Client, store: EventStore
) -> None:
    register(client, "web1")
    count, before = store.max_notification_id(), shown(client)
    reply = put(client, {"batch_size": 50, "concurrency": {"per_server": {"web1": 2, "web9": 3}}})
    assert_readable_error(reply, 422)
    message = reply.json()["error"]
    assert "concurrency.per_server" in message and "web9" in message
    assert "not registered" in message and "web1" not in message
    assert store.max_notification_id() == count
    assert shown(client) == before
    register(client, "web9")  # once it is, the same change goes through
    assert put(client, {"concurrency": {"per_server": {"web1": 2, "web9": 3}}}).status_code == 200


def test_enabling_tickets_without_the_whmcs_api_is_422_naming_the_field(
    store: EventStore, book: StoreSettingsBook, clock: Clock
) -> None:
    with serving(settings_app(store, book, clock, whmcs_api=False)) as client:
        reply = put(client, {"batch_size": 50, "tickets": {"enabled": True, "priority": "High"}})
        assert_readable_error(reply, 422)
        message = reply.json()["error"]
        assert "tickets.enabled" in message
        for variable in ("HOSTWRIGHT_WHMCS_URL", "_IDENTIFIER", "_SECRET"):
            assert variable in message
        assert store.max_notification_id() == 0
        assert shown(client) == DEFAULT_DOCUMENT
        # what needs no WHMCS is still changed, tickets off included
        assert put(client, {"tickets": {"enabled": False, "priority": "High"}}).status_code == 200


UNREADABLE: list[tuple[str, bytes, str, int]] = [
    ("malformed JSON", b'{"batch_size": 5', "application/json", 400),
    ("a JSON list", b"[1]", "application/json", 400),
    ("an empty body", b"", "application/json", 400),
    ("JSON null", b"null", "application/json", 400),
    ("Infinity", b'{"retry": {"max_backoff_s": Infinity}}', "application/json", 400),
    ("a form", b"batch_size=5", "application/x-www-form-urlencoded", 400),
    # json reads 1e999 as inf: the domain must refuse it, not the parser
    ("an overflowing number", b'{"retry": {"max_backoff_s": 1e999}}', "application/json", 422),
]


@pytest.mark.parametrize(
    ("case", "raw", "content_type", "status"), UNREADABLE, ids=[c for c, *_ in UNREADABLE]
)
def test_an_unreadable_body_is_refused_and_changes_nothing(
    client: Client, store: EventStore, case: str, raw: bytes, content_type: str, status: int
) -> None:
    reply = client.request(
        "PUT", "/v1/settings", content=raw, headers={**STAFF, "Content-Type": content_type}
    )
    assert_readable_error(reply, status)
    assert store.max_notification_id() == 0
    assert shown(client) == DEFAULT_DOCUMENT


@pytest.mark.parametrize(
    "headers", [{}, {"Authorization": "Bearer not-the-token"}], ids=["missing", "wrong"]
)
def test_settings_need_the_token(
    client: Client, store: EventStore, headers: dict[str, str]
) -> None:
    assert_readable_error(client.get("/v1/settings", headers=headers), 401)
    reply = client.request("PUT", "/v1/settings", json={"batch_size": 5}, headers=headers)
    assert_readable_error(reply, 401)
    assert store.max_notification_id() == 0
    assert shown(client) == DEFAULT_DOCUMENT


# --- writers racing -------------------------------------------------------------------------


class StaleFirstBook(StoreSettingsBook):
    """Loads a copy taken before another admin's change, once: its save must then lose and
    the change be decided again on the fresh state."""

    def __init__(self, store: EventStore, stale: RuntimeSettings) -> None:
        super().__init__(store, DEFAULTS)
        self._stale: RuntimeSettings | None = stale

    def _load(self) -> RuntimeSettings | None:
        if self._stale is not None:
            stale, self._stale = self._stale, None
            return stale
        return super()._load()


def test_a_change_that_loses_a_race_is_merged_into_the_winner(
    book: StoreSettingsBook, store: EventStore
) -> None:
    book.change(parse_settings_update({"batch_size": 10}), START, "admin-a")
    stale: Any = store.app.repository.get(SETTINGS_ID)
    book.change(parse_settings_update({"retry": {"max_attempts": 9}}), START, "admin-b")
    late = StaleFirstBook(store, stale)
    applied = late.change(parse_settings_update({"tickets": {"enabled": True}}), START, "admin-c")
    assert applied.changed == ["tickets.enabled"]
    values = book.current()
    assert (values.batch_size, values.retry.max_attempts, values.tickets.enabled) == (10, 9, True)


# --- the reader the running parts use -------------------------------------------------------


def test_the_reader_sees_a_change_after_refresh_or_its_ttl(
    book: StoreSettingsBook, clock: Clock
) -> None:
    monotonic = SecondsClock(1000.0)
    reader = RuntimeSettingsReader(book, ttl=30, monotonic=monotonic)
    assert reader.current() == DEFAULTS

    book.change(
        parse_settings_update(
            {
                "retry": {"max_attempts": 2, "initial_backoff_s": 1, "max_backoff_s": 4},
                "concurrency": {"default": 2, "per_server": {"web1": 6}},
                "batch_size": 25,
                "tickets": {"enabled": True, "department_id": 3, "priority": "Low"},
            }
        ),
        clock(),
        "admin",
    )
    assert reader.current() == DEFAULTS  # cached
    reader.refresh()
    values = reader.current()
    assert values.policy() == RetryPolicy(max_attempts=2, initial_backoff_s=1, max_backoff_s=4)
    assert values.max_concurrency("web1") == 6
    assert values.max_concurrency("web1", registered=3) == 6  # the override wins
    assert values.max_concurrency("mail1", registered=3) == 3
    assert values.max_concurrency("mail1") == 2
    assert values.batch_size == 25
    assert values.tickets == TicketConfig(enabled=True, department_id=3, priority="Low")

    book.change(parse_settings_update({"batch_size": 26}), clock(), "admin")
    monotonic.now += 29
    assert reader.current().batch_size == 25
    monotonic.now += 1
    assert reader.current().batch_size == 26


class FlakySource:
    def __init__(self, values: RuntimeSettingsValues) -> None:
        self.values = values
        self.down = False
        self.reads = 0

    def current(self) -> RuntimeSettingsValues:
        self.reads += 1
        if self.down:
            raise OSError("the database is gone")
        return self.values


def test_the_reader_keeps_the_last_values_while_the_store_is_down(
    caplog: pytest.LogCaptureFixture,
) -> None:
    source = FlakySource(DEFAULTS)
    monotonic = SecondsClock(1000.0)
    reader = RuntimeSettingsReader(source, ttl=5, monotonic=monotonic)
    assert reader.current() == DEFAULTS
    source.down = True
    reader.refresh()
    assert reader.current() == DEFAULTS
    assert "OSError" in caplog.text and "gone" not in caplog.text
    assert reader.current() == DEFAULTS
    assert source.reads == 2  # not re-read on every call while down: once per ttl
    monotonic.now += 5
    reader.current()
    assert source.reads == 3


def test_the_reader_raises_when_it_never_read_anything() -> None:
    source = FlakySource(DEFAULTS)
    source.down = True
    with pytest.raises(OSError):
        RuntimeSettingsReader(source).current()


# --- wiring ---------------------------------------------------------------------------------


def test_the_composition_root_serves_the_settings(tmp_path: Path) -> None:
    system = System(
        Settings(
            database_url=f"sqlite:///{tmp_path / 'store.sqlite'}",
            api_token=TOKEN,
            staff_token=STAFF_TOKEN,
            secret_key="a-secret-key-only-for-tests-0123456789",
            retry_max_attempts=4,
        )
    )
    try:
        with serving(system.gateway()) as client:
            assert shown(client)["retry"]["max_attempts"] == 4
            assert put(client, {"retry": {"max_attempts": 6}}).status_code == 200
            assert system.runtime_settings() is system.runtime_settings()
            assert system.runtime_settings().current().retry.max_attempts == 6
    finally:
        asyncio.run(system.close())


def test_the_book_satisfies_the_port(book: StoreSettingsBook) -> None:
    port: SettingsBook = book
    assert port.current() == DEFAULTS
