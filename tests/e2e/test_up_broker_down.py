"""``hostwright up`` while the broker is away: one log line per connection attempt, naming the
back-off, and SIGTERM while it waits ends it cleanly (exit 0, no traceback, no coroutine left
un-awaited)."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.cli_runs import clean_environ, closed_port
from tests.support.processes import wait_for

RETRY_LINE = "retrying in"


@pytest.mark.parametrize("loop", ["uvloop", "asyncio"])
def test_up_waits_for_the_broker_one_line_a_retry_and_stops_cleanly(
    tmp_path: Path, loop: str
) -> None:
    broker_port = closed_port()
    env = clean_environ(
        event_loop=loop,
        api_token="t" * 40,
        secret_key="k" * 40,
        listen="127.0.0.1:0",
        database_url=f"sqlite:///{tmp_path / 'store.sqlite'}",
        amqp_url=f"amqp://guest:guest@127.0.0.1:{broker_port}/",
    )
    log_path = tmp_path / "up.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "ops.cli", "up"],
            cwd=tmp_path,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_for(
            lambda: log_path.read_text(errors="replace").count(RETRY_LINE) >= 3,
            60,
            "three connection attempts",
        )
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    text = log_path.read_text(errors="replace")
    assert code == 0, text
    assert "Traceback" not in text and "never awaited" not in text, text
    about_the_broker = [
        line
        for line in text.splitlines()
        if str(broker_port) in line or "refused" in line.lower() or "amqp" in line.lower()
    ]
    assert about_the_broker, text
    # each attempt says so once, with the back-off; the AMQP libraries add nothing
    assert all(RETRY_LINE in line for line in about_the_broker), "\n".join(about_the_broker)
