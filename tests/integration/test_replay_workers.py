"""Replay in worker processes, on SQLite and PostgreSQL: the services split into shards each
replayed in a forked worker give the verdict the in-process replay gives, differences found
in several workers add up to what one process finds, and a worker that raises or dies is an
error naming it (``hostwright replay`` exits non-zero) — never a hang, never a verdict, and
no worker process is left behind, Ctrl-C in the parent included."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ops.cli import main
from ops.devtools.bench.replay import fill
from ops.store.database import Database
from ops.store.event_store import EventStore
from ops.views import replay as replay_module
from ops.views import worker_processes
from ops.views.replay import ShardJob, replay_and_compare
from ops.views.replay_shards import Shard
from ops.views.view_store import ViewStore
from ops.views.worker_processes import WorkerFailed
from projections.catalogue import all_views
from tests.support.decode_counting import decoded_rows

SERVICES = 3


@pytest.fixture
def filled(database_url: str) -> Iterator[tuple[EventStore, Database]]:
    # what this test worker runs already (another module's deployment, say) is not ours
    _EARLIER.clear()
    _EARLIER.update(_all_children())
    fill(database_url, SERVICES)
    store, db = EventStore(database_url), Database(database_url)
    try:
        yield store, db
    finally:
        db.close()
        store.close()
        assert _children() == [], "a replay worker outlived the test"


_EARLIER: set[int] = set()


def _children() -> list[int]:
    """This process's live child processes started during this test."""
    return [pid for pid in _all_children() if pid not in _EARLIER]


def _all_children() -> list[int]:
    """This process's live child processes, as the kernel lists them."""
    found: list[int] = []
    for task in Path(f"/proc/{os.getpid()}/task").iterdir():
        try:
            found += [int(pid) for pid in (task / "children").read_text().split()]
        except FileNotFoundError:
            continue  # a thread that ended as we looked (pytest-xdist's own come and go)
    return found


def _folds_here(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The processes ``fold_all`` ran in, as seen from this one (a fork's calls stay there)."""
    pids: list[int] = []
    fold = replay_module.fold_all

    def recording(*args: Any) -> None:
        pids.append(os.getpid())
        fold(*args)

    monkeypatch.setattr(replay_module, "fold_all", recording)
    return pids


def test_workers_and_one_process_find_every_view_equal(
    filled: tuple[EventStore, Database], monkeypatch: pytest.MonkeyPatch
) -> None:
    store, db = filled
    folded_here = _folds_here(monkeypatch)
    assert replay_and_compare(store, db, all_views(), workers=2) is None
    assert folded_here == []  # the views were folded in the workers
    assert replay_and_compare(store, db, all_views(), workers=1) is None
    assert folded_here == [os.getpid()]


def test_differences_found_in_several_workers_are_reported_as_in_one_process(
    filled: tuple[EventStore, Database], monkeypatch: pytest.MonkeyPatch
) -> None:
    store, db = filled
    services = [f"g{number}" for number in range(SERVICES)]
    assert len({_shard_of(service, 4) for service in services}) > 1  # several workers differ
    with db.transaction() as cur:
        cur.execute("UPDATE hw_task_queue SET state = 'error' WHERE step = 'web.package'")
        cur.execute("DELETE FROM hw_timeline WHERE step = 'web.package' AND service_id = 'g2'")
    folded_here = _folds_here(monkeypatch)
    in_workers = replay_and_compare(store, db, all_views(), workers=4)
    assert folded_here == []
    assert in_workers is not None
    assert "view task_queue" in in_workers and "live 'error' != replayed 'succeeded'" in in_workers
    assert f"rows that differ: task_queue {SERVICES}, timeline 1" in in_workers
    assert replay_and_compare(store, db, all_views(), workers=1) == in_workers
    assert replay_and_compare(store, db, all_views(), workers=3) == in_workers


def _shard_of(service: str, count: int) -> int:
    return next(index for index in range(count) if Shard(index, count).owns(service))


def test_each_event_is_decoded_by_one_shard_only(
    filled: tuple[EventStore, Database], monkeypatch: pytest.MonkeyPatch
) -> None:
    store, db = filled
    decoded = decoded_rows(monkeypatch)
    assert replay_and_compare(store, db, all_views(), workers=1) is None
    in_one_process = sorted(row[0] for row in decoded)
    views, live = all_views(), ViewStore(db, all_views())
    snapshots = {view.name: live.snapshot_values(view.name) for view in views}
    by_shard = []
    for index in range(2):  # each shard replayed here, so that its decoding is counted
        decoded.clear()
        job = ShardJob(store.database_url, db.url, views, "hw_", 100, snapshots, Shard(index, 2))
        verdicts = replay_module.replay_shard(job)
        assert all(count == 0 for _, tables in verdicts.values() for count, *_ in tables.values())
        by_shard.append(sorted(row[0] for row in decoded))
    assert sorted(by_shard[0] + by_shard[1]) == in_one_process
    assert all(0 < len(shard) < len(in_one_process) for shard in by_shard)


def test_a_worker_that_dies_is_an_error_naming_its_shard(
    filled: tuple[EventStore, Database], monkeypatch: pytest.MonkeyPatch
) -> None:
    store, db = filled

    def dying(store: EventStore, views: Any, *rest: Any) -> None:
        if rest[-1].shard.index == 1:
            os._exit(7)  # as a worker killed or out of memory ends: no answer at all

    monkeypatch.setattr(replay_module, "fold_all", dying)
    with pytest.raises(WorkerFailed, match=r"shard 2 of 2.*without an answer \(exit code 7\)"):
        replay_and_compare(store, db, all_views(), workers=2)
    assert _children() == []


def test_a_worker_that_raises_makes_replay_exit_non_zero_with_its_error(
    filled: tuple[EventStore, Database],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    store, _ = filled

    def failing(*args: Any) -> None:
        raise RuntimeError("the disk went away")

    monkeypatch.setattr(replay_module, "fold_all", failing)
    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HOSTWRIGHT_DATABASE_URL", store.database_url)
    assert main(["replay"]) == 1
    shown = capsys.readouterr()
    assert "every view equals" not in shown.out and "differ" not in shown.out
    assert "hostwright: replay did not finish: replay of " in shown.err
    assert "RuntimeError: the disk went away" in shown.err
    assert _children() == []


def test_ctrl_c_in_the_parent_kills_the_workers(
    filled: tuple[EventStore, Database], monkeypatch: pytest.MonkeyPatch
) -> None:
    store, db = filled
    seen: list[list[int]] = []

    def never_ending(*args: Any) -> None:
        os.read(os.pipe()[0], 1)  # blocks until killed: nobody writes to it

    def interrupted(*args: Any) -> list[Any]:
        seen.append(_children())
        raise KeyboardInterrupt

    monkeypatch.setattr(replay_module, "fold_all", never_ending)
    monkeypatch.setattr(worker_processes, "wait", interrupted)
    with pytest.raises(KeyboardInterrupt):
        replay_and_compare(store, db, all_views(), workers=2)
    assert len(seen) == 1 and len(seen[0]) == 2  # both workers were running
    assert _children() == []


def test_every_view_table_says_which_service_its_rows_are_about() -> None:
    # the rule the shards rest on: a table without it could not be split between workers
    for view in all_views():
        for table in view.tables:
            assert "service_id" in [column.name for column in table.columns], table.name


def test_every_service_is_in_exactly_one_shard_and_no_service_in_the_first() -> None:
    services = [f"s{number}" for number in range(400)]
    for count in (1, 2, 3, 8):
        shards = [Shard(index, count) for index in range(count)]
        for service in services:
            assert sum(shard.owns(service) for shard in shards) == 1
        assert [shard.owns(None) for shard in shards] == [True] + [False] * (count - 1)
        assert all(sum(shard.owns(s) for s in services) > 400 / count / 2 for shard in shards)
    with pytest.raises(ValueError, match="shard 2 of 2 does not exist"):
        Shard(2, 2)
