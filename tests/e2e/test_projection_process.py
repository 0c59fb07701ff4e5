"""A projection process killed mid-stream resumes to views equal to a replay from event 0;
``hostwright replay`` exits 0 on a clean store and 1 once a view row is tampered with."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from ops.store.database import Database
from ops.store.event_store import EventStore
from ops.views.view_store import ViewStore
from projections.catalogue import all_views
from tests.support.outbox import record_orders
from tests.support.processes import HostwrightProcess, wait_for

ROOT = Path(__file__).resolve().parents[2]


def replay(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ops.cli", "replay"],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )


def test_projections_killed_mid_stream_resume_to_a_replays_rows(
    database_url: str, tmp_path: Path
) -> None:
    total = 6000
    store, db = EventStore(database_url), Database(database_url)
    record_orders(store, total)
    views = all_views()
    positions = ViewStore(db, views)
    env = {"HOSTWRIGHT_DATABASE_URL": database_url, "HOSTWRIGHT_PROJECTION_BATCH": "20"}

    def least_position() -> int:
        return min(positions.position(view.name) for view in views)

    first = HostwrightProcess(["serve", "projections"], env, tmp_path, "projections-1").start()
    try:
        wait_for(lambda: least_position() >= 300, 60, "the projections to get going")
        first.kill()
    finally:
        first.__exit__()
    assert least_position() < total, "projections finished before the kill: not mid-stream"

    with HostwrightProcess(["serve", "projections"], env, tmp_path, "projections-2") as second:
        wait_for(lambda: least_position() == total, 120, "the projections to catch up")
        assert second.terminate() == 0, second.log()

    clean = replay(env)
    assert clean.returncode == 0, clean.stdout + clean.stderr

    with db.transaction() as cur:
        cur.execute("UPDATE hw_services SET status = 'active' WHERE service_id = '77'")
    tampered = replay(env)
    assert tampered.returncode == 1, tampered.stdout + tampered.stderr
    assert "services" in tampered.stdout and "status" in tampered.stdout
    store.close()
    db.close()
