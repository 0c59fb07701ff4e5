"""A Service ordered and asked for lifecycle actions at a fixed time, as the aggregate tests
drive it.

Consumes order fields and lifecycle actions; emits the Service and the names of the events
each command recorded.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from domain.commands import parse_lifecycle, parse_order
from domain.service import Service

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


def ordered(mode: str = "split", **extra: object) -> Service:
    body = {
        "service_id": 42,
        "client_id": 7,
        "mode": mode,
        "domain": "shop.example.com",
        "plan": {"package": "default"},
        **extra,
    }
    service = Service.order(parse_order(body, now=NOW, actor="whmcs"), None)
    service.collect_events()
    return service


def ask(service: Service, action: str, body: dict[str, object] | None = None) -> list[str]:
    """Runs one lifecycle command; returns the names of the events it recorded."""
    command = parse_lifecycle(action, "42", body or {}, now=NOW + timedelta(minutes=1), actor="a")
    service.handle(command)
    return [type(e).__name__ for e in service.collect_events()]
