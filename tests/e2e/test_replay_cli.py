"""``hostwright replay`` audits a database that exists: a missing one is an error (nothing
created), an unreachable PostgreSQL one line and a non-zero exit within its connect timeout,
never a silent hang or an empty database reported as "every view equals its rebuild"."""

from __future__ import annotations

from pathlib import Path

import pytest

from ops.store.event_store import EventStore
from tests.support.cli_runs import closed_port, run_cli


def _one_line(stderr: str) -> str:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("hostwright: "), stderr
    return lines[0]


def test_replay_without_configuration_finds_no_database_and_creates_none(tmp_path: Path) -> None:
    done = run_cli(tmp_path, "replay")
    assert done.returncode != 0, done.stdout
    assert "every view equals" not in done.stdout
    assert "hostwright.sqlite" in _one_line(done.stderr)
    assert list(tmp_path.iterdir()) == []


def test_replay_of_a_database_file_that_does_not_exist_creates_none(tmp_path: Path) -> None:
    missing = tmp_path / "typo" / "hostwrite.sqlite"
    done = run_cli(tmp_path, "replay", database_url=f"sqlite:///{missing}")
    assert done.returncode != 0, done.stdout
    assert str(missing) in _one_line(done.stderr)
    assert list(tmp_path.iterdir()) == []


def test_replay_of_an_unreachable_postgresql_says_so_and_exits(tmp_path: Path) -> None:
    url = f"postgresql://postgres:s3cret-pw@127.0.0.1:{closed_port()}/hostwright"
    done = run_cli(tmp_path, "replay", database_url=url)  # fails if it runs on past its guard
    assert done.returncode != 0, done.stdout
    line = _one_line(done.stderr)
    assert "did not answer" in line and "s3cret-pw" not in line, line
    assert "Traceback" not in done.stderr


def test_replay_of_an_existing_database_compares_its_views(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'store.sqlite'}"
    EventStore(url).close()  # a store with no events yet
    done = run_cli(tmp_path, "replay", database_url=url)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "replay: every view equals its rebuild from event 0"


def test_replay_in_one_process_on_request_and_a_worker_count_below_1_refused(
    tmp_path: Path,
) -> None:
    url = f"sqlite:///{tmp_path / 'store.sqlite'}"
    EventStore(url).close()
    done = run_cli(tmp_path, "replay", "--workers", "1", database_url=url)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "replay: every view equals its rebuild from event 0"
    for count in ("0", "two"):
        refused = run_cli(tmp_path, "replay", "--workers", count, database_url=url)
        assert refused.returncode == 2
        assert "argument --workers: must be a whole number of at least 1" in refused.stderr


@pytest.mark.parametrize("command", ["rotate-key", "backfill-claims"])
def test_the_other_store_commands_find_no_database_and_create_none(
    tmp_path: Path, command: str
) -> None:
    """Run where no store is, they would report an empty new one as all in order."""
    done = run_cli(tmp_path, command, secret_key="k" * 40)
    assert done.returncode != 0, done.stdout
    assert "hostwright.sqlite" in _one_line(done.stderr)
    assert list(tmp_path.iterdir()) == []
