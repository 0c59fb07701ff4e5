"""``hostwright demo``: the whole system on the embedded default (SQLite + in-process transport).

Prints ``gateway: <url>`` and ``token: <token>`` before it serves, then places a few sample
orders through the public API so there is something to look at.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from pathlib import Path

import httpx

from ops.bootstrap import System
from ops.components import serve_all
from ops.consumer import install_stop_signals
from ops.settings import Settings

log = logging.getLogger(__name__)

SAMPLE_ORDERS = [
    {
        "service_id": 1001,
        "client_id": 1,
        "mode": "split",
        "domain": "split-demo.example.com",
        "plan": {"package": "basic", "disk_mb": 1024, "mail_accounts": 10},
    },
    {
        "service_id": 1002,
        "client_id": 2,
        "mode": "unified",
        "domain": "unified-demo.example.net",
        "plan": {"package": "standard", "disk_mb": 4096},
    },
    {
        "service_id": 1003,
        "client_id": 3,
        "mode": "vanity",
        "label": "shop",
        "domain": "shop.hosted-by-demo.example",
        "plan": {"package": "vanity"},
    },
]


def run_demo(*, listen: str, data_dir: str) -> int:
    data = Path(data_dir).resolve()
    data.mkdir(parents=True, exist_ok=True)
    settings = Settings(
        database_url=f"sqlite:///{data / 'hostwright.sqlite'}",
        listen=listen,
        api_token=_kept_secret(data / "api_token"),
        secret_key=_kept_secret(data / "secret_key"),
    )
    settings.check()
    url = f"http://{settings.listen}"
    print(f"gateway: {url}", flush=True)
    print(f"token: {settings.api_token}", flush=True)
    print(
        f"try: curl -H 'Authorization: Bearer {settings.api_token}' {url}/v1/services/1001",
        flush=True,
    )
    asyncio.run(_serve_with_samples(System(settings), url))
    return 0


async def _serve_with_samples(system: System, url: str) -> None:
    stop = asyncio.Event()
    install_stop_signals(stop)
    serving = asyncio.ensure_future(serve_all(system, stop))
    try:
        await _place_sample_orders(url, system.settings.api_token or "", serving)
        await serving
    finally:
        stop.set()
        await asyncio.gather(serving, return_exceptions=True)
        await system.close()


async def _place_sample_orders(url: str, token: str, serving: asyncio.Future[None]) -> None:
    headers = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(base_url=url, timeout=5) as client:
        for _ in range(200):
            if serving.done():
                return
            try:
                if (await client.get("/healthz")).status_code == 200:
                    break
            except httpx.TransportError:
                await asyncio.sleep(0.05)
        for order in SAMPLE_ORDERS:
            reply = await client.post("/v1/services", json=order, headers=headers)
            log.info("demo order %s: %s %s", order["service_id"], reply.status_code, reply.text)


def _kept_secret(path: Path) -> str:
    """A random secret kept in the data folder, so a restarted demo keeps its token and key."""
    if path.exists():
        return path.read_text().strip()
    value = secrets.token_urlsafe(24)
    path.write_text(value + "\n")
    path.chmod(0o600)
    return value
