"""A split order recorded straight in the event store, as the gateway records WHMCS's: what
the pipeline tests start a run from.

``order_in_store`` consumes a store, a service id and the time of the order; it records
service ``<id>`` of client 1, domain ``s<id>.example.com``, on the default package.
"""

from __future__ import annotations

from datetime import datetime

from domain.commands import parse_order
from ops.store.event_store import EventStore


def order_in_store(store: EventStore, service_id: str, *, now: datetime) -> None:
    body = {
        "service_id": service_id,
        "client_id": 1,
        "mode": "split",
        "domain": f"s{service_id}.example.com",
        "plan": {"package": "default"},
    }
    store.order_service(parse_order(body, now=now, actor="whmcs"), None)
