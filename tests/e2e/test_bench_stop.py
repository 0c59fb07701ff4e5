"""A benchmark stopped with SIGTERM (a CI timeout, ``kill``) stops what it started: its
processes and simulated nodes, and its scratch database. Before, the default action of
SIGTERM ended it at once and left every part running, holding CPU for the next run."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest

from ops.devtools.bench.deploy.driver import PARTS
from ops.devtools.demo_nodes import SPLIT_NODES
from tests.support.budget import budget
from tests.support.cli_runs import clean_environ
from tests.support.processes import wait_for

pytestmark = pytest.mark.slow


def _parents() -> dict[int, int]:
    found: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, IndexError, ValueError):
                # the command may hold spaces and parentheses: fields after its last ")"
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
                if fields[0] != "Z":
                    found[int(entry.name)] = int(fields[1])
    return found


def descendants(pid: int) -> set[int]:
    parents, found, frontier = _parents(), set(), {pid}
    while frontier:
        frontier = {child for child, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


def alive(pids: set[int]) -> set[int]:
    return pids & set(_parents())


def bench_databases(postgres_url: str) -> set[str]:
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        rows = conn.execute("SELECT datname FROM pg_database WHERE datname LIKE 'hw_bench_%'")
        return {name for (name,) in rows.fetchall()}


def test_a_benchmark_stopped_with_sigterm_stops_what_it_started(
    tmp_path: Path, amqp_url: str, postgres_url: str
) -> None:
    databases_before = bench_databases(postgres_url)
    command = [
        sys.executable,
        "-m",
        "ops.cli",
        "bench",
        "deploy",
        "--services",
        "5",
        "--latency-ms",
        "0",
        "--paced",  # a paced phase far longer than the test: it is stopped while it runs
        "40",
        "--paced-rate",
        "0.2",
        "--no-profile",
        "--amqp-url",
        amqp_url,
        "--postgres-url",
        postgres_url,
    ]
    with (tmp_path / "bench.log").open("wb") as log:
        bench = subprocess.Popen(
            command,
            cwd=tmp_path,
            env=clean_environ(),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    started: set[int] = set()

    def all_running() -> bool:
        started.clear()
        started.update(descendants(bench.pid))
        return len(started) >= len(PARTS) + len(SPLIT_NODES)

    try:
        # every part and every simulated node is running (the floors before them come and go)
        wait_for(all_running, budget(180), "the benchmark's parts and nodes")
        bench.send_signal(signal.SIGTERM)
        bench.wait(budget(90))
        wait_for(lambda: not alive(started), budget(30), "the benchmark's processes to stop")
        assert bench_databases(postgres_url) <= databases_before, "its scratch database is left"
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(bench.pid, signal.SIGKILL)
        for pid in alive(started):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        bench.wait()
