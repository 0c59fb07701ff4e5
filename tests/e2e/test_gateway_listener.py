"""A gateway address that is taken is one clear line and exit 2, before anything starts."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from ops.runtime.gateway_listener import ListenError, bind_listeners

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def taken_port() -> Iterator[int]:
    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    holder.listen()
    yield holder.getsockname()[1]
    holder.close()


def _hostwright(
    args: list[str], env: dict[str, str], cwd: Path
) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("HOSTWRIGHT_")}
    return subprocess.run(
        [sys.executable, "-m", "ops.cli", *args],
        env={**clean, "PYTHONPATH": str(ROOT), **env},
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_bind_listeners_listens_or_names_the_address(taken_port: int) -> None:
    with pytest.raises(ListenError, match=rf"127\.0\.0\.1:{taken_port}: .*another process"):
        bind_listeners("127.0.0.1", taken_port)
    with pytest.raises(ListenError, match=r"cannot listen on no-such-host\.invalid:80"):
        bind_listeners("no-such-host.invalid", 80)
    with pytest.raises(ListenError, match=r"192\.0\.2\.1:8080: .*not an address of this"):
        bind_listeners("192.0.2.1", 8080)
    for listener in bind_listeners("localhost", 0):  # a name: each address it resolves to
        assert listener.getsockname()[1] > 0
        listener.close()
    first = bind_listeners("127.0.0.1", 0)
    try:
        port = first[0].getsockname()[1]
        assert port > 0
        # a second process asking a moment later, before any request was served, is refused
        with pytest.raises(ListenError, match="another process holds it"):
            bind_listeners("127.0.0.1", port)
    finally:
        for listener in first:
            listener.close()


def test_demo_on_a_taken_port_says_so_and_starts_nothing(taken_port: int, tmp_path: Path) -> None:
    data = tmp_path / "demo-data"
    done = _hostwright(
        ["demo", "--listen", f"127.0.0.1:{taken_port}", "--data", str(data)], {}, ROOT
    )
    assert done.returncode == 2, done.stderr
    assert done.stdout == ""  # no URL, no token printed for a gateway that never ran
    assert done.stderr.startswith(f"hostwright: cannot listen on 127.0.0.1:{taken_port}: ")
    assert "Traceback" not in done.stderr and len(done.stderr.splitlines()) == 1
    assert not (data / "nodes").exists()  # no simulated node was started


def test_serve_gateway_on_a_taken_port_says_so(taken_port: int, tmp_path: Path) -> None:
    env = {
        "HOSTWRIGHT_LISTEN": f"127.0.0.1:{taken_port}",
        "HOSTWRIGHT_DATABASE_URL": f"sqlite:///{tmp_path / 'store.db'}",
    }
    for args in (["serve", "gateway"], ["up"]):
        done = _hostwright(args, env, tmp_path)
        assert done.returncode == 2, done.stderr
        assert f"hostwright: cannot listen on 127.0.0.1:{taken_port}: " in done.stderr
        assert "Traceback" not in done.stderr
