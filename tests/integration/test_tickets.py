"""WHMCS tickets for failed operations, end to end below the broker: a real event store
(SQLite and PostgreSQL), the real WHMCS client, and a WHMCS double over HTTP that checks
action names, parameters and credentials as WHMCS documents them.

Failures reach the desk through the tickets component's handler (``TicketFeed.handle``) with
the envelope the relay publishes for each ``Task.Errored``."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from eventsourcing.utils import get_topic

from domain.commands import parse_order
from domain.retry_policy import RetryPolicy
from domain.task import Task, task_uuid
from domain.ticket import Ticket, TicketConfig, ticket_uuid
from handlers.ticket_desk import TicketDesk
from handlers.whmcs_api import WhmcsApi, WhmcsRejected, WhmcsTicket, WhmcsUnavailable
from ops.adapters.ticket_store import StoreTicketAdapter
from ops.bootstrap import System
from ops.messaging.topology import QUEUES, declare_topology
from ops.messaging.transport import Message
from ops.runtime.components import COMPONENTS
from ops.services.tickets import TicketFeed, settings_ticket_config
from ops.settings import Settings, SettingsError
from ops.store.event_store import EventStore
from tests.fakes.clock import Clock
from tests.support.budget import budget
from tests.support.whmcs_double import IDENTIFIER, SECRET, WhmcsDouble

T0 = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
POLICY = RetryPolicy(max_attempts=3, initial_backoff_s=10, max_backoff_s=60)
ENABLED = TicketConfig(enabled=True, department_id=2, priority="High")


class Crash(BaseException):
    """The process dies right after WHMCS carried out a call, before its outcome is saved."""


class CrashAfterOpen(WhmcsApi):
    async def open_ticket(self, **kwargs: Any) -> WhmcsTicket:
        await super().open_ticket(**kwargs)
        raise Crash


@pytest.fixture
def whmcs() -> Iterator[WhmcsDouble]:
    double = WhmcsDouble()
    double.start()
    yield double
    double.stop()


@pytest.fixture
def store(database_url: str) -> Iterator[EventStore]:
    store = EventStore(database_url)
    for service_id in ("42", "43"):
        body = {
            "service_id": service_id,
            "client_id": 7,
            "mode": "split",
            "domain": f"s{service_id}.example.com",
            "plan": {"package": "default"},
        }
        store.order_service(parse_order(body, now=T0, actor="whmcs"), None)
    yield store
    store.close()


def api(url: str, secret: str = SECRET, cls: type[WhmcsApi] = WhmcsApi) -> WhmcsApi:
    return cls(url, IDENTIFIER, secret, timeout_s=5)


def desk(
    store: EventStore, whmcs_api: Any, clock: Clock, config: TicketConfig = ENABLED
) -> TicketDesk:
    return TicketDesk(
        StoreTicketAdapter(store),
        whmcs_api,
        lambda: config,
        clock=clock,
        unit_random=lambda: 0.5,
        lease_s=60,
    )


def fail(
    store: EventStore, service_id: str, run: int, step: str, clock: Clock, operation: str = "deploy"
) -> Message:
    """The task errors terminally (retried by staff first if it had errored before); returns
    the message the relay publishes for that Task.Errored."""
    task_id = task_uuid(service_id, run, step)
    task: Any
    try:
        task = store.app.repository.get(task_id)
        task.retry(clock(), "staff")
    except Exception:
        task = Task.plan(
            service_id=service_id,
            run=run,
            step=step,
            role="web",
            action="ensure_user",
            server_id="web1",
            params={"user": "u1", "password_sealed": "sealed-pw"},
            depends_on=[],
            now=clock(),
            operation=operation,
        )
    attempt = task.dispatch(clock(), 60)
    task.fail(
        attempt,
        clock(),
        error="v-add-user exited 8 (limit)",
        retryable=False,
        log=[],
        policy=POLICY,
        unit_random=0.5,
    )
    store.save(task)
    topic = get_topic(Task.Errored)
    for notification in store.recorder.select_notifications(start=0, limit=10_000, topics=[topic]):
        if (
            notification.originator_id == task.id
            and notification.originator_version == task.version
        ):
            return Message("Task.Errored", store.envelope(notification), str(notification.id))
    raise AssertionError("the Task.Errored notification is missing")


def ticket_of(store: EventStore, service_id: str, run: int, operation: str = "deploy") -> Ticket:
    found = StoreTicketAdapter(store).ticket(ticket_uuid(service_id, operation, run))
    assert found is not None
    return found


def kinds(store: EventStore, ticket_id: uuid.UUID) -> list[str]:
    stored = store.recorder.select_events(ticket_id)
    return [type(store.app.mapper.to_domain_event(s)).__name__ for s in stored]


async def test_three_failures_of_one_operation_open_one_ticket_and_add_two_notes(
    store: EventStore, whmcs: WhmcsDouble
) -> None:
    clock = Clock(T0)
    feed = TicketFeed(desk(store, api(whmcs.url), clock), StoreTicketAdapter(store))
    await feed.handle(fail(store, "42", 1, "web.user", clock))
    clock.advance(seconds=5)
    await feed.handle(fail(store, "42", 1, "web.user", clock))  # after Try again: same run
    clock.advance(seconds=5)
    await feed.handle(fail(store, "42", 1, "mail.domain", clock))

    opened, notes = whmcs.calls("OpenTicket"), whmcs.calls("AddTicketNote")
    assert len(opened) == 1 and len(notes) == 2
    params = opened[0].params
    assert (params["deptid"], params["priority"], params["clientid"], params["serviceid"]) == (
        "2",
        "High",
        "7",
        "42",
    )
    assert params["subject"].startswith("hostwright: deploy of service 42 failed")
    assert "web.user" in params["message"] and "web1" in params["message"]
    assert "v-add-user exited 8 (limit)" in params["message"]
    ticket = ticket_of(store, "42", 1)
    assert {n.params["ticketid"] for n in notes} == {str(ticket.whmcs_ticket_id)}
    assert "mail.domain" in notes[1].params["message"]
    sent = " ".join(c.params.get("message", "") for c in whmcs.calls())
    assert "sealed-pw" not in sent and "password" not in sent.lower()
    assert not ticket.has_work


async def test_two_operations_get_two_tickets(store: EventStore, whmcs: WhmcsDouble) -> None:
    clock = Clock(T0)
    feed = TicketFeed(desk(store, api(whmcs.url), clock), StoreTicketAdapter(store))
    await feed.handle(fail(store, "42", 1, "web.user", clock))
    await feed.handle(fail(store, "42", 2, "web.user", clock))  # a Redeploy: a new run
    await feed.handle(fail(store, "43", 1, "web.user", clock, operation="reset"))

    opened = whmcs.calls("OpenTicket")
    assert len(opened) == 3 and not whmcs.calls("AddTicketNote")
    assert len(whmcs.tickets()) == 3
    assert "factory reset of service 43" in opened[2].params["subject"]
    assert ticket_of(store, "42", 1).whmcs_ticket_id != ticket_of(store, "42", 2).whmcs_ticket_id


@pytest.mark.parametrize("how", ["refuse", "503"])
async def test_with_whmcs_down_the_ticket_arrives_later_once(
    store: EventStore, whmcs: WhmcsDouble, how: str
) -> None:
    clock = Clock(T0)
    the_desk = desk(store, api(whmcs.url), clock)
    feed = TicketFeed(the_desk, StoreTicketAdapter(store))
    whmcs.down(how)
    await feed.handle(fail(store, "42", 1, "web.user", clock))  # does not raise
    ticket = ticket_of(store, "42", 1)
    assert ticket.has_work and ticket.last_error and ticket.retry_at is not None
    assert await the_desk.deliver_pending() == 1  # still down, and not due yet anyway

    whmcs.up()
    assert await the_desk.deliver_pending() == 1 and not whmcs.calls()  # back-off not over
    clock.advance(seconds=60)
    tick = Message("cron.tickets", b"{}", "cron:tickets:1")
    await feed.handle(tick)  # the scheduler's tick on the tickets queue retries it
    assert len(whmcs.calls("OpenTicket")) == 1
    assert await the_desk.deliver_pending() == 0
    clock.advance(seconds=600)
    assert await the_desk.deliver_pending() == 0
    assert len(whmcs.calls("OpenTicket")) == 1 and len(whmcs.tickets()) == 1
    recorded = kinds(store, ticket.id)
    assert "DeliveryFailed" in recorded and recorded.count("Opened") == 1


async def test_disabled_tickets_record_and_send_nothing(
    store: EventStore, whmcs: WhmcsDouble
) -> None:
    clock = Clock(T0)
    the_desk = desk(store, api(whmcs.url), clock, TicketConfig(enabled=False))
    await TicketFeed(the_desk, StoreTicketAdapter(store)).handle(
        fail(store, "42", 1, "web.user", clock)
    )
    assert await the_desk.deliver_pending() == 0
    assert StoreTicketAdapter(store).ticket(ticket_uuid("42", "deploy", 1)) is None
    assert not whmcs.calls()


async def test_a_redelivered_task_errored_adds_no_note(
    store: EventStore, whmcs: WhmcsDouble
) -> None:
    clock = Clock(T0)
    feed = TicketFeed(desk(store, api(whmcs.url), clock), StoreTicketAdapter(store))
    message = fail(store, "42", 1, "web.user", clock)
    await feed.handle(message)
    await feed.handle(message)  # the relay republished it; the inbox did not catch it
    assert len(whmcs.calls("OpenTicket")) == 1 and not whmcs.calls("AddTicketNote")
    assert len(ticket_of(store, "42", 1).failures) == 1


async def test_a_crash_after_an_uncertain_open_is_recovered_not_duplicated(
    store: EventStore, whmcs: WhmcsDouble
) -> None:
    clock = Clock(T0)
    crashing = TicketFeed(
        desk(store, api(whmcs.url, cls=CrashAfterOpen), clock), StoreTicketAdapter(store)
    )
    with pytest.raises(Crash):
        await crashing.handle(fail(store, "42", 1, "web.user", clock))
    assert len(whmcs.tickets()) == 1 and ticket_of(store, "42", 1).whmcs_ticket_id is None

    restarted = desk(store, api(whmcs.url), clock)
    assert await restarted.deliver_pending() == 1  # inside the lease: maybe still in flight
    assert len(whmcs.calls()) == 1
    clock.advance(seconds=61)
    assert await restarted.deliver_pending() == 0
    assert len(whmcs.calls("OpenTicket")) == 1 and len(whmcs.calls("GetTickets")) == 1
    ticket = ticket_of(store, "42", 1)
    assert ticket.whmcs_ticket_id == next(iter(whmcs.tickets()))
    assert kinds(store, ticket.id).count("Opened") == 1

    await TicketFeed(restarted, StoreTicketAdapter(store)).handle(
        fail(store, "42", 1, "web.user", clock)
    )
    notes = whmcs.calls("AddTicketNote")
    assert len(notes) == 1 and notes[0].params["ticketid"] == str(ticket.whmcs_ticket_id)


async def test_a_note_whose_answer_was_lost_is_found_not_sent_again(
    store: EventStore, whmcs: WhmcsDouble
) -> None:
    clock = Clock(T0)
    the_desk = desk(store, api(whmcs.url), clock)
    feed = TicketFeed(the_desk, StoreTicketAdapter(store))
    await feed.handle(fail(store, "42", 1, "web.user", clock))
    whmcs.lose_next_answer("AddTicketNote")
    await feed.handle(fail(store, "42", 1, "web.user", clock))
    assert ticket_of(store, "42", 1).has_work  # WHMCS has the note; we could not know
    clock.advance(seconds=60)
    assert await the_desk.deliver_pending() == 0
    assert len(whmcs.calls("AddTicketNote")) == 1 and len(whmcs.calls("GetTicket")) == 1
    (only,) = whmcs.tickets().values()
    assert len(only["notes"]) == 1


async def test_the_secret_never_appears_in_errors_events_or_reprs(
    store: EventStore, whmcs: WhmcsDouble
) -> None:
    clock = Clock(T0)
    wrong = "wrong-secret-Xy7"
    with pytest.raises(WhmcsRejected) as refused:
        await api(whmcs.url, secret=wrong).find_ticket(client_id=7, marker="[hw:x]")
    assert "Authentication Failed" in str(refused.value) and wrong not in str(refused.value)
    whmcs.down("refuse")
    with pytest.raises(WhmcsUnavailable) as down:
        await api(whmcs.url).add_ticket_note(ticket_id=1, message="hello")
    assert SECRET not in str(down.value) and not down.value.maybe_done
    assert SECRET not in repr(api(whmcs.url))

    await TicketFeed(desk(store, api(whmcs.url), clock), StoreTicketAdapter(store)).handle(
        fail(store, "42", 1, "web.user", clock)
    )
    stored = store.recorder.select_notifications(start=0, limit=10_000)
    assert stored and not any(SECRET.encode() in n.state for n in stored)
    settings = Settings.load({"HOSTWRIGHT_WHMCS_SECRET": SECRET, "HOSTWRIGHT_CONFIG": ""})
    assert settings.whmcs_secret == SECRET and SECRET not in repr(settings)


async def test_the_double_refuses_what_whmcs_would_refuse(whmcs: WhmcsDouble) -> None:
    """So the tests above would fail on a wrong action name, parameter or credential."""
    base = {"identifier": IDENTIFIER, "secret": SECRET, "responsetype": "json"}
    ticket = {"deptid": "2", "subject": "s", "message": "m", "clientid": "7"}
    async with httpx.AsyncClient(base_url=whmcs.url) as client:

        async def post(form: dict[str, str]) -> Any:
            response = await client.post("/includes/api.php", data=form)
            try:
                return response.json()
            except ValueError:
                return response.text

        assert (await post({**base, "action": "OpenTicket", **ticket}))["result"] == "success"
        assert (await post({**base, "action": "CreateTicket", **ticket}))["message"] == (
            "Command Not Found"
        )
        no_dept = {k: v for k, v in ticket.items() if k != "deptid"}
        assert (
            "missing deptid" in (await post({**base, "action": "OpenTicket", **no_dept}))["message"]
        )
        typo = {**ticket, "department": "2"}
        assert (
            "not a documented" in (await post({**base, "action": "OpenTicket", **typo}))["message"]
        )
        bad_secret = {**base, "secret": "nope", "action": "GetTickets"}
        assert (await post(bad_secret))["message"] == "Authentication Failed"
        xml = {**base, "responsetype": "xml", "action": "GetTickets"}
        assert isinstance(await post(xml), str)
        note = {**base, "action": "AddTicketNote", "ticketid": "99", "message": "m"}
        assert (await post(note))["message"] == "Ticket ID Not Found"
    assert len(whmcs.calls()) == 1


@pytest.mark.parametrize("broker", ["rabbitmq", "in-process"])
async def test_the_tickets_component_consumes_task_errored_from_its_queue(
    sqlite_url: str, whmcs: WhmcsDouble, broker: str, amqp_url: str, exchange_name: str
) -> None:
    """`hostwright serve tickets` as wired: settings → System → queue `tickets` → WHMCS. Three
    terminal failures of one operation (one of them relayed twice) and one of another."""
    settings = Settings(
        database_url=sqlite_url,
        amqp_url=amqp_url if broker == "rabbitmq" else None,
        exchange=exchange_name,
        whmcs_url=whmcs.url,
        whmcs_identifier=IDENTIFIER,
        whmcs_secret=SECRET,
        tickets_enabled=True,
        tickets_department_id=2,
        tickets_priority="Low",
    )
    clock = Clock(T0)
    system = System(settings, clock=clock)
    body = {
        "service_id": "42",
        "client_id": 7,
        "mode": "split",
        "domain": "s42.example.com",
        "plan": {"package": "default"},
    }
    system.store.order_service(parse_order(body, now=T0, actor="whmcs"), None)
    await system.transport.connect()
    system.transport_connected = True
    await declare_topology(system.transport)
    messages = [fail(system.store, "42", 1, step, clock) for step in ("web.user", "mail.user")]
    messages.append(messages[0])  # republished by the relay: the inbox absorbs it
    messages.append(fail(system.store, "42", 1, "dns.user@dns1", clock))
    messages.append(fail(system.store, "42", 2, "web.user", clock))  # another operation
    for message in messages:
        await system.transport.publish(message)
    stop = asyncio.Event()
    serving = asyncio.ensure_future(COMPONENTS["tickets"](system, stop))
    try:
        for _ in range(200):
            if len(whmcs.calls("OpenTicket")) == 2 and len(whmcs.calls("AddTicketNote")) == 2:
                break
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.3)  # nothing more follows
    finally:
        stop.set()
        await asyncio.wait_for(serving, budget(10))
        if broker == "rabbitmq":
            for queue in QUEUES:
                await system.transport.delete_queue(queue)
                await system.transport.delete_queue(f"{queue}.dead")
            await system.transport.delete_exchange()
        await system.close()
    opened = whmcs.calls("OpenTicket")
    assert len(opened) == 2
    assert {(o.params["deptid"], o.params["priority"]) for o in opened} == {("2", "Low")}
    assert len(whmcs.calls("AddTicketNote")) == 2


def test_ticket_settings_come_from_the_environment() -> None:
    env = {
        "HOSTWRIGHT_CONFIG": "",
        "HOSTWRIGHT_WHMCS_URL": "https://billing.example.com/",
        "HOSTWRIGHT_WHMCS_IDENTIFIER": IDENTIFIER,
        "HOSTWRIGHT_WHMCS_SECRET": SECRET,
        "HOSTWRIGHT_TICKETS_ENABLED": "true",
        "HOSTWRIGHT_TICKETS_DEPARTMENT_ID": "3",
        "HOSTWRIGHT_TICKETS_PRIORITY": "High",
    }
    settings = Settings.load(env)
    assert settings_ticket_config(settings) == TicketConfig(True, 3, "High")
    assert WhmcsApi(settings.whmcs_url or "", IDENTIFIER, SECRET).endpoint == (
        "https://billing.example.com/includes/api.php"
    )
    with pytest.raises(SettingsError, match="HOSTWRIGHT_WHMCS_URL"):
        Settings.load({**env, "HOSTWRIGHT_WHMCS_URL": "ftp://x"})
    without_api = {k: v for k, v in env.items() if not k.startswith("HOSTWRIGHT_WHMCS_")}
    with pytest.raises(SettingsError, match="needs HOSTWRIGHT_WHMCS_URL"):
        Settings.load(without_api)
    with pytest.raises(SettingsError, match="PRIORITY"):
        Settings.load({**env, "HOSTWRIGHT_TICKETS_PRIORITY": "Urgent"})
