"""`hostwright demo` (what `make demo` runs): prints the gateway URL and token, starts simulated
nodes, and deploys its sample orders to `active` on the embedded default (SQLite + in-process
transport); a second start with the same folder carries on where the first stopped. With
Debian's pebble installed (as here: the SSL tests need it), the demo issues its certificates
from a local pebble: the split sample's web certificate becomes issued and its node serves it,
verified against the root the demo prints, at the address its curl line names."""

from __future__ import annotations

import asyncio
import contextlib
import os
import queue
import re
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography import x509

from ops.devtools.demo import SAMPLE_IDS, SSL_SAMPLE_DOMAIN
from ops.devtools.demo_nodes import PROVIDER_DOMAIN
from ops.devtools.demo_ssl import pebble_installed
from ops.devtools.sni_handshake import presented_der
from tests.support.budget import budget
from tests.support.run_leftovers import RUN_MARK, this_run

ROOT = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class _Demo:
    def __init__(self, tmp_path: Path, data: Path, name: str) -> None:
        self.port = _free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.log_path = tmp_path / f"{name}.log"
        env = {k: v for k, v in os.environ.items() if not k.startswith("HOSTWRIGHT_")}
        env[RUN_MARK] = str(this_run())  # the run's end and the next run's start find it
        with self.log_path.open("wb") as log:
            self.proc = subprocess.Popen(
                [
                    *(sys.executable, "-m", "ops.cli", "demo"),
                    *("--listen", f"127.0.0.1:{self.port}", "--data", str(data)),
                ],
                env=env,
                cwd=ROOT,
                stdout=subprocess.PIPE,
                stderr=log,
                text=True,
                start_new_session=True,
            )
        assert self.proc.stdout is not None
        self.first_lines = [self.proc.stdout.readline().strip() for _ in range(4)]
        self.token = self.first_lines[1].removeprefix("token: ")
        self.staff_token = self.first_lines[2].removeprefix("staff token: ")

    def next_lines(self, count: int, timeout: float) -> list[str]:
        """The next ``count`` lines the demo prints; fails after ``timeout`` rather than
        waiting forever on a demo that prints no more (a daemon thread reads the pipe)."""
        stdout, lines = self.proc.stdout, queue.Queue[list[str]]()
        assert stdout is not None
        reader = threading.Thread(
            target=lambda: lines.put([stdout.readline().strip() for _ in range(count)]),
            daemon=True,
        )
        reader.start()
        try:
            return lines.get(timeout=budget(timeout))
        except queue.Empty:
            raise AssertionError(f"the demo printed fewer than {count} more lines") from None

    def get(self, path: str, token: str | None = None) -> httpx.Response:
        headers = {"Authorization": f"Bearer {token or self.token}"}
        return httpx.get(self.base + path, headers=headers, timeout=5)

    def wait_active(self, timeout: float, ids: list[int] = SAMPLE_IDS) -> dict[int, Any]:
        timeout = budget(timeout)
        deadline = time.monotonic() + timeout
        statuses: dict[int, Any] = {}
        while time.monotonic() < deadline:
            try:
                for sid in ids:
                    reply = self.get(f"/v1/services/{sid}")
                    statuses[sid] = reply.json().get("status") if reply.status_code == 200 else None
            except httpx.TransportError:
                pass
            if statuses and all(statuses.get(sid) == "active" for sid in ids):
                return statuses
            time.sleep(0.2)
        raise AssertionError(f"services {ids} did not all reach active: {statuses}\n{self.log()}")

    def mail_placement(self, sid: int) -> str:
        """The mail server placement chose for the service (its Service.Placed event)."""
        events = self.get(f"/v1/services/{sid}/events").json()["events"]
        placed = [e for e in events if e["topic"] == "Service.Placed"]
        assert placed, events
        found = list(_values_of(placed[0], "mail_server"))
        assert found, placed
        return str(found[0])

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:]

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.terminate()
        try:
            return self.proc.wait(budget(20))
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
            raise


def _values_of(tree: Any, key: str) -> Any:
    if isinstance(tree, dict):
        for name, value in tree.items():
            if name == key:
                yield value
            yield from _values_of(value, key)
    elif isinstance(tree, list):
        for item in tree:
            yield from _values_of(item, key)


def _vanity_order(sid: int, label: str) -> dict[str, Any]:
    return {
        "service_id": sid,
        "client_id": sid,
        "mode": "vanity",
        "label": label,
        "domain": f"{label}.{PROVIDER_DOMAIN}",
        "username": f"{label}demo",
        "plan": {"package": "vanity"},
    }


def test_demo_deploys_its_samples_to_active_and_carries_on_after_a_restart(
    tmp_path: Path,
) -> None:
    data = tmp_path / "demo"
    demo = _Demo(tmp_path, data, "first")
    try:
        assert demo.first_lines[0] == f"gateway: http://127.0.0.1:{demo.port}"
        assert demo.first_lines[1].startswith("token: ")
        assert demo.first_lines[2].startswith("staff token: ")
        # the domain a vanity order's must be under, so an integrator can place one
        assert demo.first_lines[3] == f"vanity domain: {PROVIDER_DOMAIN}"
        # printed once its nodes are registered: an order placed now finds them
        listed = demo.get("/v1/servers", demo.staff_token).json()["servers"]
        assert {s["server_id"] for s in listed} == {"web1", "mail1", "dns1", "dns2", "uni1"}
        assert len(demo.token) >= 32 and len(demo.staff_token) >= 32
        assert demo.token != demo.staff_token
        demo.wait_active(90)
        _sees_the_screens(demo)
        assert httpx.get(f"{demo.base}/v1/services/1003").status_code == 401
        modes = {sid: demo.get(f"/v1/services/{sid}").json()["mode"] for sid in SAMPLE_IDS}
        assert sorted(modes.values()) == ["split", "unified", "vanity"]
        timelines = {}
        for sid in SAMPLE_IDS:
            steps = timelines[sid] = demo.get(f"/v1/services/{sid}/timeline").json()["steps"]
            assert steps, f"service {sid} has no timeline"
            assert all(s["state"] == "succeeded" for s in steps), steps
            assert all(s["started_at"] and s["finished_at"] for s in steps), steps
        split_steps = demo.get("/v1/services/1001/timeline").json()["steps"]
        ssl_steps = {"ssl"} if pebble_installed() else set()  # SSL is on with pebble
        assert {s["role"] for s in split_steps} == {"web", "mail", "dns", *ssl_steps}
        assert demo.get("/v1/servers").status_code == 403  # WHMCS's token: not staff's
        servers = demo.get("/v1/servers", demo.staff_token).json()["servers"]
        assert {s["server_id"] for s in servers} >= {"web1", "mail1", "dns1", "dns2", "uni1"}
        # an integrator's vanity orders succeed wherever placement puts their mailbox, the
        # unified node included (the least loaded mail node now: it holds one service)
        extra = {2001: "blog", 2002: "wiki", 2003: "shop2"}
        for sid, label in extra.items():
            reply = httpx.post(
                f"{demo.base}/v1/services",
                json=_vanity_order(sid, label),
                headers={"Authorization": f"Bearer {demo.token}"},
                timeout=5,
            )
            assert reply.status_code == 202, reply.text
        demo.wait_active(90, list(extra))
        assert "uni1" in {demo.mail_placement(sid) for sid in extra}
    finally:
        code = demo.stop()
    assert code == 0, demo.log()
    key = data / "ssh_client_key"
    assert key.exists() and key.stat().st_mode & 0o777 == 0o600

    again = _Demo(tmp_path, data, "second")
    try:
        assert (again.token, again.staff_token) == (demo.token, demo.staff_token)
        again.wait_active(60)
        # nothing re-ran: the samples' timelines are the first run's
        for sid in SAMPLE_IDS:
            assert again.get(f"/v1/services/{sid}/timeline").json()["steps"] == timelines[sid]
        assert len(again.get("/v1/servers", again.staff_token).json()["servers"]) == 5
    finally:
        code = again.stop()
    assert code == 0, again.log()
    for name in ("first", "second"):
        log = (tmp_path / f"{name}.log").read_text(errors="replace")
        assert "Traceback" not in log and " ERROR " not in log, log[-4000:]


def _sees_the_screens(demo: _Demo) -> None:
    """The last two lines: the console's URL (signed out: its sign-in) and the first
    sample's client link, which opens its client area (active: the dashboard)."""
    after_ssl = 4 if pebble_installed() else 3  # try, ssl, (curl,) ssl state
    *_, console, link = demo.next_lines(after_ssl + 2, 30)
    assert console == f"console: {demo.base}/admin (sign in with the staff token)"
    assert link.startswith(f"client link: {demo.base}/client/{SAMPLE_IDS[0]}?token="), link
    signed_out = httpx.get(f"{demo.base}/admin", timeout=5, follow_redirects=True)
    assert signed_out.url.path == "/admin/sign-in" and 'id="sign-in"' in signed_out.text
    area = httpx.get(link.removeprefix("client link: "), timeout=5)
    assert area.status_code == 200 and 'id="dashboard"' in area.text, area.text[:2000]


@pytest.mark.slow
def test_with_pebble_the_demo_issues_the_split_samples_web_certificate(tmp_path: Path) -> None:
    assert pebble_installed(), "the SSL tests need Debian's pebble: apt-get install pebble"
    demo = _Demo(tmp_path, tmp_path / "demo", "ssl")
    try:
        try_line, ssl_line, curl_line, state_line = demo.next_lines(4, 30)
        assert try_line.startswith("try: curl ")
        root = Path(ssl_line.split("pebble's root: ", 1)[1])
        assert ssl_line.startswith("ssl: auto") and root.is_file(), ssl_line
        resolve = re.search(rf"--resolve {re.escape(SSL_SAMPLE_DOMAIN)}:(\d+):([\d.]+) ", curl_line)
        assert curl_line.startswith(f"see a certificate: curl -v --cacert {root} "), curl_line
        assert resolve is not None, curl_line
        assert state_line == f"ssl state: {demo.base}/v1/services/1001/ssl (WHMCS's token)"

        deadline = time.monotonic() + budget(90)
        web: dict[str, Any] = {}
        while time.monotonic() < deadline and web.get("state") != "issued":
            time.sleep(0.5)
            with contextlib.suppress(httpx.TransportError):
                certificates = demo.get("/v1/services/1001/ssl").json().get("certificates", [])
                web = next((c for c in certificates if c["role"] == "web"), {})
        assert web.get("state") == "issued", f"{web}\n{demo.log()}"
        assert web["names"] == [SSL_SAMPLE_DOMAIN, f"www.{SSL_SAMPLE_DOMAIN}"]

        port, ip = int(resolve[1]), resolve[2]
        presented = _served(root, ip, port, SSL_SAMPLE_DOMAIN, budget(30))  # verifies or fails
        # the one the view shows
        assert presented.not_valid_after_utc == datetime.fromisoformat(web["not_after"])
    finally:
        code = demo.stop()
    assert code == 0, demo.log()
    log = (tmp_path / "ssl.log").read_text(errors="replace")
    assert "Traceback" not in log and " ERROR " not in log, log[-4000:]


def _served(root: Path, ip: str, port: int, name: str, timeout: float) -> x509.Certificate:
    """The certificate ``ip:port`` presents for SNI ``name``, verified against ``root``
    alone; the install follows the view's ``issued``, so it is waited for."""
    context = ssl.create_default_context(cafile=str(root))

    async def handshake() -> bytes:
        return await presented_der(context, ip, port, name)

    deadline = time.monotonic() + timeout
    while True:
        try:
            return x509.load_der_x509_certificate(asyncio.run(handshake()))
        except (ssl.SSLError, OSError):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)
