"""``hostwright`` run as an operator runs it: a subprocess in a folder of its own, with only
the ``HOSTWRIGHT_*`` settings a test names (none inherited from the machine)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

# a bound guard: a command that should answer at once but runs on fails instead of hanging
ANSWER_TIMEOUT_S = 120.0


def clean_environ(**settings: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HOSTWRIGHT_")}
    env.update({f"HOSTWRIGHT_{name.upper()}": value for name, value in settings.items()})
    return env


def run_cli(cwd: Path, *args: str, **settings: str) -> subprocess.CompletedProcess[str]:
    """Runs ``hostwright ARGS`` in ``cwd``; killed (and the test failed) if it does not end."""
    return subprocess.run(
        [sys.executable, "-m", "ops.cli", *args],
        cwd=cwd,
        env=clean_environ(**settings),
        capture_output=True,
        text=True,
        timeout=ANSWER_TIMEOUT_S,
        check=False,
    )


def closed_port() -> int:
    """A local port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port
