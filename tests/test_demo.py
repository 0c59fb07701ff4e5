"""`hostwright demo` (what `make demo` runs): prints the gateway URL and token, then serves
the sample orders on the embedded default (SQLite + in-process transport)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def test_demo_prints_the_gateway_and_token_then_serves_its_sample_orders(tmp_path: Path) -> None:
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("HOSTWRIGHT_")}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "ops.cli",
            "demo",
            "--listen",
            f"127.0.0.1:{port}",
            "--data",
            str(tmp_path / "demo"),
        ],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert proc.stdout is not None
        gateway = proc.stdout.readline().strip()
        token_line = proc.stdout.readline().strip()
        assert gateway == f"gateway: http://127.0.0.1:{port}"
        assert token_line.startswith("token: ")
        token = token_line.removeprefix("token: ")
        headers = {"Authorization": f"Bearer {token}"}
        deadline = time.monotonic() + 20
        reply = None
        while time.monotonic() < deadline:
            try:
                reply = httpx.get(f"http://127.0.0.1:{port}/v1/services/1003", headers=headers)
                if reply.status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        assert reply is not None and reply.status_code == 200, reply and reply.text
        assert reply.json()["mode"] == "vanity"
        assert httpx.get(f"http://127.0.0.1:{port}/v1/services/1003").status_code == 401
    finally:
        proc.terminate()
        assert proc.wait(15) == 0
