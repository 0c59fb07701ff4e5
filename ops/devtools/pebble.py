"""Let's Encrypt's test CA, pebble (Debian's ``pebble`` package, 2.4), run for tests, the demo and
the SSL benchmark.

Consumes a working folder, the port pebble dials for HTTP-01 (``http_port``, on the address the
name's A record gives), a port for TLS-ALPN-01 (unused) and the DNS server pebble asks
(``host:port``; without one it would ask the system's resolver). Emits a running pebble on
127.0.0.1: ``directory_url``; ``ca_bundle_path``, the root of the certificate its HTTPS API
presents (a mini CA made here: the package ships none), for ``HOSTWRIGHT_ACME_CA_BUNDLE``;
``roots_path`` (the root it issues under, fetched from its management API, new on every
start) and ``intermediates_path``; ``orders_created()`` and ``requests()``, counted from its
log.

Pebble runs without its random validation sleeps, rejecting no good nonce and reusing no
authorization, so counts are exact and tests quick. ``stop()`` kills and reaps it; use it as a
context manager so a failing test leaves no process behind. It also dies with the process that
started it (Linux's parent-death signal).
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import re
import signal
import socket
import ssl
import subprocess
import threading
import time
import urllib.request
from collections.abc import Mapping
from pathlib import Path

from ops.devtools.background_server import BackgroundServer
from ops.devtools.listen_ports import free_port as free_port
from ops.devtools.mini_ca import MiniCa

PEBBLE = "/usr/bin/pebble"
QUIET_ENV = {"PEBBLE_VA_NOSLEEP": "1", "PEBBLE_WFE_NONCEREJECT": "0", "PEBBLE_AUTHZREUSE": "0"}
ORDER_ADDED = re.compile(r'Added order "[^"]+" to the db')
REQUEST = re.compile(r"\s(GET|POST|HEAD) (\S+) -> calling handler\(\)")
PR_SET_PDEATHSIG = 1


class PebbleError(RuntimeError):
    pass


class Pebble(BackgroundServer):
    def __init__(
        self,
        workdir: Path,
        *,
        http_port: int,
        tls_port: int,
        dns_server: str,
        validity_s: int = 90 * 86400,
        authz_reuse: int = 0,
        nonce_reject: int = 0,
        env: Mapping[str, str] | None = None,
        executable: str = PEBBLE,
    ) -> None:
        self.workdir = workdir
        self.http_port = http_port
        self.tls_port = tls_port
        self.dns_server = dns_server
        self.validity_s = validity_s
        self.executable = executable
        self.env = {
            **os.environ,
            **QUIET_ENV,
            "PEBBLE_AUTHZREUSE": str(authz_reuse),
            "PEBBLE_WFE_NONCEREJECT": str(nonce_reject),
            **(env or {}),
        }
        self.port = 0
        self.management_port = 0
        self.log_path = workdir / "pebble.log"
        self.ca_bundle_path = workdir / "pebble-api-ca.pem"
        self.roots_path = workdir / "pebble-roots.pem"
        self.intermediates_path = workdir / "pebble-intermediates.pem"
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def directory_url(self) -> str:
        return f"https://127.0.0.1:{self.port}/dir"

    @property
    def management_url(self) -> str:
        return f"https://127.0.0.1:{self.management_port}"

    def start(self, timeout_s: float = 20.0) -> Pebble:
        """Starts pebble and returns once its API and management API answer."""
        if not Path(self.executable).is_file():
            raise PebbleError(f"{self.executable} not found: apt-get install pebble (Debian)")
        self.workdir.mkdir(parents=True, exist_ok=True)
        config = self._write_config()
        in_main = threading.current_thread() is threading.main_thread()
        with self.log_path.open("ab") as log:
            self._proc = subprocess.Popen(
                [self.executable, "-config", str(config), "-dnsserver", self.dns_server],
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                cwd=self.workdir,
                start_new_session=True,
                # the death signal belongs to the forking thread: only the main one lives long
                preexec_fn=_die_with_parent if in_main else None,
            )
        try:
            self._wait_ready(timeout_s)
            self._fetch_roots()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def orders_created(self) -> int:
        """New orders pebble took, failed ones included (its ``/list-orderz`` omits invalid
        orders, so it cannot prove "no order")."""
        return len(ORDER_ADDED.findall(self.log()))

    def requests(self, path_prefix: str = "/") -> int:
        """ACME requests pebble handled whose path starts with ``path_prefix``."""
        return sum(1 for m in REQUEST.finditer(self.log()) if m.group(2).startswith(path_prefix))

    def _write_config(self) -> Path:
        api_ca = MiniCa("pebble API test root")
        self.ca_bundle_path.write_text(api_ca.certificate_pem)
        cert_path, key_path = api_ca.leaf(["127.0.0.1", "localhost"]).write(self.workdir, "api")
        self.port, self.management_port = free_port(), free_port()
        config = {
            "pebble": {
                "listenAddress": f"127.0.0.1:{self.port}",
                "managementListenAddress": f"127.0.0.1:{self.management_port}",
                "certificate": str(cert_path),
                "privateKey": str(key_path),
                "httpPort": self.http_port,
                "tlsPort": self.tls_port,
                "ocspResponderURL": "",
                "externalAccountBindingRequired": False,
                # pebble's default is five years
                "certificateValidityPeriod": self.validity_s,
            }
        }
        path = self.workdir / "pebble-config.json"
        path.write_text(json.dumps(config, indent=2))
        return path

    def _wait_ready(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        listening = f"Listening on: 127.0.0.1:{self.port}"
        while True:
            if not self.running:
                raise PebbleError(f"pebble exited before it was ready:\n{self.log()[-2000:]}")
            if listening in self.log() and all(
                _accepts(port) for port in (self.port, self.management_port)
            ):
                return
            if time.monotonic() > deadline:
                raise PebbleError(f"pebble not ready after {timeout_s:g} s:\n{self.log()[-2000:]}")
            time.sleep(0.02)

    def _fetch_roots(self) -> None:
        context = ssl.create_default_context(cafile=str(self.ca_bundle_path))
        opener = urllib.request.build_opener(
            urllib.request.ProxyHandler({}), urllib.request.HTTPSHandler(context=context)
        )

        def fetch(path: str) -> str:
            with opener.open(self.management_url + path, timeout=10) as answer:
                return str(answer.read().decode())

        self.roots_path.write_text(fetch("/roots/0"))
        self.intermediates_path.write_text(fetch("/intermediates/0"))


def _accepts(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


try:  # looked up here, not in the forked child, where an import could wait on a lock forever
    _PRCTL = getattr(ctypes.CDLL(None, use_errno=True), "prctl", None)
except OSError:
    _PRCTL = None


def _die_with_parent() -> None:
    if _PRCTL is not None:
        _PRCTL(PR_SET_PDEATHSIG, signal.SIGKILL)
