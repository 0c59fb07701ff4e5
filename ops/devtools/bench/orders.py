"""The orders the benchmarks offer the gateway: one ``POST /v1/services`` Split order per
request, numbered from an offset so every phase of a run orders services of its own.

Consumes a request number; emits (method, path, JSON body) for the load generator.
"""

from __future__ import annotations

from ops.devtools.http_load import RequestFactory, json_body


def split_orders(offset: int, *, with_username: bool) -> RequestFactory:
    """Orders for services ``offset``, ``offset + 1``, …; ``with_username`` names the Hestia
    user in the order, otherwise the plan derives one from the domain (intake measures the
    body without it, as it always has)."""

    def make(i: int) -> tuple[str, str, bytes | None]:
        sid = offset + i
        body = {
            "service_id": sid,
            "client_id": sid % 997,
            "mode": "split",
            "domain": f"bench{sid}.example.com",
            **({"username": f"bench{sid}"} if with_username else {}),
            "plan": {"package": "bench", "disk_mb": 1024},
        }
        return "POST", "/v1/services", json_body(body)

    return make
