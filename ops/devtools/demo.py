"""``hostwright demo``: the whole system on the embedded default (SQLite + in-process transport),
with simulated HestiaCP nodes, in one process.

It starts simulated nodes (web1, mail1, dns1, dns2 and a unified uni1, kept under
``DIR/nodes``), authorizes the handlers' SSH key on them (``DIR/ssh_client_key``, made once,
mode 600), makes the provider's vanity mail user, mail domain, DNS user and zone on them as
staff would, registers them through ``POST /v1/servers`` (with the staff token) and places a
few sample orders (split, unified, vanity) that deploy to ``active``. Once every node is
registered it prints ``gateway: <url>``, ``token: <token>`` (WHMCS's: orders and services),
``staff token: <token>`` (everything: servers, settings, the task queue) and ``vanity domain:
<domain>`` (a vanity order's domain is ``<label>.<domain>``), so an order placed at once finds
its nodes. Every vanity mailbox goes to mail1, which holds the provider's mail domain,
wherever placement puts the service's mail. Run it again with the same ``DIR`` and it carries
on: same tokens, same nodes and state, re-registration is a no-op (or a re-key when a node's
port had to change), and the sample orders are repeats, which the
gateway answers without recording anything.

With Debian's ``pebble`` and ``publicsuffix`` installed, automatic SSL is on
(ops/devtools/demo_ssl.py): a local pebble issues the certificates, each node has an address
of its own (127.0.0.81-85), every service's domain is pointed at its DNS nodes once placed,
and after the four lines above (and a ``try:`` line) it prints ``ssl: auto …`` with pebble's
root, a curl line that shows a certificate, and where the SSL state is read. Without them it
runs with SSL off and prints ``ssl: off …`` naming the packages to install. Last come the
screens: ``console: <url>/admin`` (staff sign in with the staff token) and ``client link:
<url>``, the first sample's client area as WHMCS would open it (a link valid for an hour).
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import httpx

from ops.bootstrap import System
from ops.devtools.demo_nodes import (
    PROVIDER_DNS_USER,
    PROVIDER_DOMAIN,
    PROVIDER_MAIL_SERVER,
    PROVIDER_MAIL_USER,
    DemoNodes,
    NodeAddress,
    ensure_client_key,
    provision_provider,
    wait_until,
)
from ops.devtools.demo_ssl import NODE_IPS, DemoSsl, missing_packages, pebble_installed
from ops.runtime import event_loop
from ops.runtime.components import serve_all
from ops.runtime.stopping import STOP_GRACE_S, install_stop_signals, within_grace
from ops.settings import Settings

log = logging.getLogger(__name__)

SAMPLE_ORDERS = [
    {
        "service_id": 1001,
        "client_id": 1,
        "mode": "split",
        "domain": "split-demo.example.com",
        "username": "splitdemo",
        "plan": {"package": "basic", "disk_mb": 1024, "mail_accounts": 10},
    },
    {
        "service_id": 1002,
        "client_id": 2,
        "mode": "unified",
        "domain": "unified-demo.example.net",
        "username": "unidemo",
        "plan": {"package": "standard", "disk_mb": 4096},
    },
    {
        "service_id": 1003,
        "client_id": 3,
        "mode": "vanity",
        "label": "shop",
        "domain": f"shop.{PROVIDER_DOMAIN}",
        "username": "shopdemo",
        "plan": {"package": "vanity"},
    },
]
SAMPLE_IDS: list[int] = [int(str(order["service_id"])) for order in SAMPLE_ORDERS]
SSL_SAMPLE_DOMAIN = str(SAMPLE_ORDERS[0]["domain"])  # split: its web certificate is on web1
NODE_MAX_CONCURRENCY = 4


SSL_LAYOUT_MARK = "ssl-layout"  # in DIR: its nodes are on addresses of their own (NODE_IPS)


def ssl_layout(data: Path) -> bool:
    """Whether the demo folder's nodes are laid out for SSL: a new folder is (marked so);
    one made before without it keeps its nodes on 127.0.0.1, where they were registered."""
    mark = data / SSL_LAYOUT_MARK
    if not mark.exists() and not (data / "nodes").exists():
        mark.write_text("nodes on addresses of their own: ops/devtools/demo_ssl.py NODE_IPS\n")
    return mark.exists()


def ssl_off_line(missing: list[str]) -> str:
    if not missing:
        return (
            "ssl: off (this demo folder was made without SSL, its nodes registered on "
            "127.0.0.1: start with a new folder to see SSL; for make demo: rm -rf demo-data)"
        )
    return (
        f"ssl: off (`apt-get install {' '.join(missing)}` and the demo issues its "
        "certificates from a local pebble, Let's Encrypt's test CA)"
    )


def demo_settings(listen: str, data: Path) -> Settings:
    return Settings(
        database_url=f"sqlite:///{data / 'hostwright.sqlite'}",
        listen=listen,
        api_token=_kept_secret(data / "api_token"),
        staff_token=_kept_secret(data / "staff_token"),
        secret_key=_kept_secret(data / "secret_key"),
        ssh_key=str(data / "ssh_client_key"),
        vanity_domain=PROVIDER_DOMAIN,
        vanity_mail_user=PROVIDER_MAIL_USER,
        vanity_dns_user=PROVIDER_DNS_USER,
        # without it a vanity mailbox would go to the mail node placement chose, and on the
        # unified node the provider's mail domain is absent (it serves the provider's zone)
        vanity_mail_server=PROVIDER_MAIL_SERVER,
        # a demo should show a retry within seconds, not minutes
        retry_initial_backoff_s=1.0,
        retry_max_backoff_s=30.0,
        lease_s=30.0,
        heartbeat_s=5.0,
        command_timeout_s=30.0,
    )


def run_demo(*, listen: str, data_dir: str) -> int:
    data = Path(data_dir).resolve()
    data.mkdir(parents=True, exist_ok=True)
    settings = demo_settings(listen, data)
    settings.check()
    ssl = DemoSsl(data) if pebble_installed() and ssl_layout(data) else None
    try:
        if ssl is not None:
            ssl.start_pebble()
            settings = ssl.settings(settings)
            settings.check()
        system = System(settings)
        system.listeners()  # a taken address is a one-line error before the URL is printed
        url = f"http://{settings.listen}"
        event_loop.run(_serve_with_samples(system, url, data, ssl))
    finally:
        if ssl is not None:
            ssl.stop_pebble()
    return 0


def _announce(settings: Settings, url: str, ssl: DemoSsl | None, client_link: str) -> None:
    """The URL and tokens, printed once the nodes are registered; then the staff console
    and the first sample's client link (what its customer would open from WHMCS)."""
    print(f"gateway: {url}", flush=True)
    print(f"token: {settings.api_token}", flush=True)
    print(f"staff token: {settings.staff_token}", flush=True)
    # a vanity order's domain is <label>.<this>: an integrator needs it to place one
    print(f"vanity domain: {settings.vanity_domain}", flush=True)
    print(
        f"try: curl -H 'Authorization: Bearer {settings.api_token}' {url}/v1/services/1001",
        flush=True,
    )
    ssl_lines = (
        ssl.lines(SSL_SAMPLE_DOMAIN) if ssl is not None else [ssl_off_line(missing_packages())]
    )
    for line in [
        *ssl_lines,
        f"ssl state: {url}/v1/services/1001/ssl (WHMCS's token)",
        f"console: {url}/admin (sign in with the staff token)",
        f"client link: {client_link}",
    ]:
        print(line, flush=True)


async def _serve_with_samples(system: System, url: str, data: Path, ssl: DemoSsl | None) -> None:
    stop = asyncio.Event()
    install_stop_signals(stop, STOP_GRACE_S)  # and exit late if a part hangs past its grace
    key_path = Path(system.settings.ssh_key or data / "ssh_client_key")
    public_key = ensure_client_key(key_path)
    nodes = DemoNodes(
        data / "nodes",
        public_key,
        ips=NODE_IPS if (data / SSL_LAYOUT_MARK).exists() else {},
        shared_ports=ssl.ports if ssl is not None else None,
    )
    serving = asyncio.ensure_future(serve_all(system, stop))
    pointing: asyncio.Future[None] | None = None
    try:
        if ssl is not None:
            await ssl.start_resolver()
        addresses = await nodes.start()
        await provision_provider(addresses, key_path)
        if ssl is not None:
            ips = {a.server_id: a.ip for a in addresses}
            pointing = asyncio.ensure_future(ssl.point_dns(system.store, ips))
        setup = asyncio.ensure_future(
            _register_and_order(
                url,
                _tokens(system.settings),
                addresses,
                serving,
                partial(_announce, system.settings, url, ssl),
            )
        )
        await asyncio.wait({serving, setup}, return_when=asyncio.FIRST_COMPLETED)
        if setup.done() and setup.exception() is not None:
            log.error("demo: setting up the sample data failed: %s", setup.exception())
        await within_grace(serving, stop, STOP_GRACE_S)
    finally:
        stop.set()
        if pointing is not None:
            pointing.cancel()
        await asyncio.gather(serving, *filter(None, [pointing]), return_exceptions=True)
        await nodes.stop()
        await system.close()
        if ssl is not None:
            await ssl.stop_resolver()


def _tokens(settings: Settings) -> tuple[str, str]:
    return settings.api_token or "", settings.staff_token or ""


async def _register_and_order(
    url: str,
    tokens: tuple[str, str],
    addresses: list[NodeAddress],
    serving: asyncio.Future[None],
    announce: Callable[[str], None],
) -> None:
    """Registers the split nodes, orders split and vanity, and only once both are placed
    registers the unified node (then ``announce``: every node is there) and orders unified
    (as tests/e2e/test_deploy_e2e.py does). Where a vanity service's mailbox goes no longer
    depends on this order: ``vanity_mail_server`` sends every one to mail1."""
    whmcs_token, staff_token = tokens
    staff = {"Authorization": f"Bearer {staff_token}"}
    headers = {"Authorization": f"Bearer {whmcs_token}"}
    async with httpx.AsyncClient(base_url=url, headers=headers, timeout=10) as client:
        for _ in range(400):
            if serving.done():
                return
            try:
                if (await client.get("/healthz")).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.05)

        async def register(nodes: list[NodeAddress]) -> None:
            for node in nodes:
                body = node.registration(NODE_MAX_CONCURRENCY)
                reply = await client.post("/v1/servers", json=body, headers=staff)
                if reply.status_code == 409:  # its port had to change since the last run
                    moved = {name: body[name] for name in ("host", "port", "host_key")}
                    path = f"/v1/servers/{node.server_id}/rekey"
                    await client.post(path, json=moved, headers=staff)
                    reply = await client.post("/v1/servers", json=body, headers=staff)
                if reply.status_code != 202:
                    raise RuntimeError(f"registering {node.server_id}: {reply.text}")

        async def order(body: dict[str, Any]) -> None:
            reply = await client.post("/v1/services", json=body)
            log.info("demo order %s: %s %s", body["service_id"], reply.status_code, reply.text)

        async def placed(service_id: object) -> bool:
            reply = await client.get(f"/v1/services/{service_id}/events")
            topics = [e["topic"] for e in reply.json().get("events", [])]
            return reply.status_code == 200 and "Service.Placed" in topics

        unified = [n for n in addresses if len(n.roles) == 3]
        await register([n for n in addresses if n not in unified])
        first = [o for o in SAMPLE_ORDERS if o["mode"] != "unified"]
        for body in first:
            await order(body)
        for body in first:
            sid = body["service_id"]
            await wait_until(partial(placed, sid), 60, f"service {sid}'s placement")
        await register(unified)
        announce(await client_link(client, SAMPLE_IDS[0]))
        for body in SAMPLE_ORDERS:
            if body["mode"] == "unified":
                await order(body)


async def client_link(client: httpx.AsyncClient, service_id: int) -> str:
    """The service's client link, minted as WHMCS would (the order is stored by now; the
    route answers 404 until the views have it)."""
    path = f"/v1/services/{service_id}/client-link"
    for _ in range(600):
        reply = await client.post(path, json={})
        if reply.status_code != 404:
            break
        await asyncio.sleep(0.05)
    if reply.status_code != 200:
        raise RuntimeError(f"minting a client link: {reply.status_code} {reply.text}")
    return str(reply.json()["url"])


def _kept_secret(path: Path) -> str:
    """A random secret kept in the data folder, so a restarted demo keeps its token and key."""
    if path.exists():
        return path.read_text().strip()
    value = secrets.token_urlsafe(32)
    path.write_text(value + "\n")
    path.chmod(0o600)
    return value
