"""HOSTWRIGHT_SSL: off by default, and off changes nothing (no ssl queues, no cron.ssl job,
``up`` without ``handler ssl``); ``auto`` adds them; anything else is named at start, and
``serve handler ssl`` with SSL off is refused before it starts. The SSL desk's feed turns
deliveries into checks: a certificate event its certificate, a service event the service's
two, the tick what the view says is due, each certificate once at a time."""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import datetime

from domain.certificate import certificate_uuid
from domain.service import service_uuid
from ops.bootstrap import System
from ops.messaging.topology import QUEUES, SSL_QUEUES
from ops.messaging.transport import Message
from ops.runtime.components import COMPONENTS, components_of
from ops.runtime.readiness import SSL_OFF, readiness_problems
from ops.services.cron_jobs import cron_periods
from ops.services.ssl import SslFeed
from ops.settings import Settings
from tests.support.ssl_values import T0

BASE = {"HOSTWRIGHT_SECRET_KEY": "k" * 40, "HOSTWRIGHT_AMQP_URL": "amqp://localhost"}


def test_ssl_is_off_by_default_and_off_adds_nothing() -> None:
    settings = Settings.load(BASE)
    assert settings.ssl == "off" and not settings.ssl_auto
    assert not {"ssl", "ssl_expiry"} & set(cron_periods(settings))
    assert not set(SSL_QUEUES) & set(QUEUES)
    assert "handler.ssl" in COMPONENTS  # `serve handler ssl` exists …
    up = components_of(System(settings))
    assert COMPONENTS["handler.ssl"] not in up  # … but `up` leaves it out
    assert len(up) == len(COMPONENTS) - 1
    assert readiness_problems(settings, "handler.ssl") == [SSL_OFF]


def test_auto_adds_the_tick_and_the_component() -> None:
    settings = Settings.load({**BASE, "HOSTWRIGHT_SSL": "auto", "HOSTWRIGHT_CRON_SSL_S": "2"})
    assert settings.ssl_auto and cron_periods(settings)["ssl"] == 2.0
    assert cron_periods(settings)["ssl_expiry"] == 3600.0  # custom certificates' warnings
    assert components_of(System(settings)) == list(COMPONENTS.values())
    assert SSL_OFF not in readiness_problems(settings, "handler.ssl")


def test_a_wrong_value_is_named() -> None:
    _, problems = Settings.read({**BASE, "HOSTWRIGHT_SSL": "on"})
    assert any(p.startswith("HOSTWRIGHT_SSL must be one of off, auto") for p in problems)


class Desk:
    def __init__(self) -> None:
        self.checked: list[uuid.UUID] = []
        self.release = asyncio.Event()
        self.warned_at: list[datetime] = []

    async def warn_expiring(self, now: datetime) -> list[tuple[uuid.UUID, int]]:
        self.warned_at.append(now)
        return [(uuid.uuid4(), 14)]

    async def check(self, cert_id: uuid.UUID) -> str:
        self.checked.append(cert_id)
        await self.release.wait()
        return "valid"


class Due:
    def __init__(self, ids: list[uuid.UUID]) -> None:
        self.ids = ids
        self.asked: list[tuple[datetime, int]] = []

    def due(self, now: datetime, limit: int) -> list[uuid.UUID]:
        self.asked.append((now, limit))
        return self.ids[:limit]


def _event(topic: str, aggregate_id: uuid.UUID) -> Message:
    body = {"topic": topic, "aggregate_id": str(aggregate_id), "version": 1, "data": {}}
    return Message(routing_key=topic, body=json.dumps(body).encode(), message_id=topic)


async def test_the_feed_checks_what_each_delivery_names() -> None:
    desk, cert = Desk(), uuid.uuid4()
    due = Due([cert, uuid.uuid4()])
    services = {service_uuid("42"): "42"}
    feed = SslFeed(desk, due, services.get, lambda: T0, concurrency=2, limit=5)
    await feed.handle(_event("Certificate.Seeded", cert))
    await feed.handle(_event("Certificate.IssueRequested", cert))  # already being checked
    await feed.handle(_event("Service.Terminated", service_uuid("42")))
    await feed.handle(_event("Service.Unsuspended", service_uuid("7")))  # no such service
    await asyncio.sleep(0.01)
    assert desk.checked == [cert, certificate_uuid("42", "web")]  # two slots
    desk.release.set()
    await feed.work.drain()
    assert desk.checked[2:] == [certificate_uuid("42", "mail")]
    tick = Message(routing_key="cron.ssl", body=b"{}", message_id="cron:ssl:1")
    await feed.handle(tick)
    await feed.work.drain()
    assert due.asked == [(T0, 5)] and desk.checked[3:] == due.ids


async def test_the_expiry_tick_asks_the_desk_for_the_warnings_owed_and_checks_nothing() -> None:
    desk, due = Desk(), Due([uuid.uuid4()])
    feed = SslFeed(desk, due, {}.get, lambda: T0, concurrency=2, limit=5)
    tick = Message(routing_key="cron.ssl_expiry", body=b"{}", message_id="cron:ssl_expiry:1")
    await feed.handle(tick)
    await feed.work.drain()
    assert desk.warned_at == [T0] and desk.checked == [] and due.asked == []
