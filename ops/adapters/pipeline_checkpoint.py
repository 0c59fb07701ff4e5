"""The pipeline's checkpoint: what it must load when it rebuilds, so a rebuild reads the open
work, not every Task ever recorded.

Consumes the pipeline's checkpoints — the ids of the tasks it holds (its open runs, and the
failed runs waiting for a Try again) as of a position in the store's notification log, and the
last run of each service that ended well since the previous checkpoint. Emits, on rebuild, the
tasks of the last checkpoint together with every task a Task event was recorded on after its
position; and the last run that ended well for one service.

Three tables in the database of the views, each written in one transaction with the others:
``{prefix}pipeline_position`` (one row), ``{prefix}pipeline_open(task_id)`` and
``{prefix}pipeline_finished(service_id, run)`` (one row per service that ever finished a run; a
run number only ever grows there). The position is read before the pipeline captures its
tasks, under its lock: every Task event it records later has a greater notification id, so a
pipeline that dies between two checkpoints loses nothing — the events after the position are
read again. Without a checkpoint (a new database, or one from before this existed) the
position is 0 and the first rebuild reads every Task event once, as before.

Synchronous: the pipeline calls it in a thread.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

from domain.task import Task
from ops.store.database import Database
from ops.store.event_store import EventStore, aggregate_event_topics

TASK_EVENT_TOPICS = aggregate_event_topics(Task, Task.Planned)
_PAGE = 5000


class PipelineCheckpoint:
    def __init__(self, store: EventStore, db: Callable[[], Database], prefix: str = "hw_") -> None:
        self._store = store
        self._db_of = db
        self._db: Database | None = None
        self._db_lock = threading.Lock()
        self._tasks = store.repository(Task, "task")
        self._position = f"{prefix}pipeline_position"
        self._open = f"{prefix}pipeline_open"
        self._finished = f"{prefix}pipeline_finished"

    def position(self) -> int:
        """The store's latest notification id."""
        return self._store.max_notification_id()

    def save(
        self, position: int, task_ids: Sequence[uuid.UUID], finished: Mapping[str, int]
    ) -> None:
        """Records the tasks held as of ``position`` and the runs that ended well since the
        last checkpoint, in one transaction."""
        db = self._ready()
        with db.transaction() as cur:
            cur.execute(f"DELETE FROM {self._open}")  # noqa: S608
            cur.executemany(
                f"INSERT INTO {self._open} (task_id) VALUES (?)",  # noqa: S608
                [(str(task_id),) for task_id in dict.fromkeys(task_ids)],
            )
            cur.executemany(
                f"INSERT INTO {self._finished} (service_id, run) VALUES (?, ?) "  # noqa: S608
                f"ON CONFLICT (service_id) DO UPDATE SET run = excluded.run "
                f"WHERE {self._finished}.run < excluded.run",
                list(finished.items()),
            )
            cur.execute(
                f"INSERT INTO {self._position} (id, position) VALUES (1, ?) "  # noqa: S608
                "ON CONFLICT (id) DO UPDATE SET position = excluded.position",
                (position,),
            )

    def finished_run(self, service_id: str) -> int:
        """The last run of the service that ended well as last checkpointed; 0 for none."""
        db = self._ready()
        with db.transaction() as cur:
            cur.execute(
                f"SELECT run FROM {self._finished} WHERE service_id = ?",  # noqa: S608
                (service_id,),
            )
            row = cur.fetchone()
        return int(row[0]) if row else 0

    def open_work(self) -> list[Task]:
        """The tasks of the last checkpoint and of every Task event recorded after it, each as
        the store has it now."""
        position, held = self._last()
        tail = list(self._notifications_after(position))
        born_in_tail: set[uuid.UUID] = set()
        whole: set[uuid.UUID] = set(held)
        for notification in tail:
            task_id = notification.originator_id
            if task_id in whole or task_id in born_in_tail:
                continue
            if notification.originator_version == 1:
                born_in_tail.add(task_id)  # its whole history is in the tail: folded below
            else:
                whole.add(task_id)  # began before the position: loaded whole
        folded: dict[uuid.UUID, Any] = {}
        for notification in tail:
            if notification.originator_id in born_in_tail:
                event: Any = self._store.decode(notification)
                folded[event.originator_id] = event.mutate(folded.get(event.originator_id))
        loaded = [task for task in map(self._tasks.find, whole) if task is not None]
        return [*loaded, *folded.values()]

    def _last(self) -> tuple[int, list[uuid.UUID]]:
        db = self._ready()
        with db.transaction() as cur:
            cur.execute(f"SELECT position FROM {self._position} WHERE id = 1")  # noqa: S608
            row = cur.fetchone()
            cur.execute(f"SELECT task_id FROM {self._open}")  # noqa: S608
            ids = [uuid.UUID(str(r[0])) for r in cur.fetchall()]
        return (int(row[0]) if row else 0), ids

    def _notifications_after(self, position: int) -> Iterator[Any]:
        return self._store.notifications_of(TASK_EVENT_TOPICS, after=position, page=_PAGE)

    def _ready(self) -> Database:
        with self._db_lock:
            if self._db is None:
                db = self._db_of()
                db.create_table(self._position, "id INTEGER PRIMARY KEY, position BIGINT NOT NULL")
                db.create_table(self._open, "task_id TEXT PRIMARY KEY")
                db.create_table(self._finished, "service_id TEXT PRIMARY KEY, run INTEGER NOT NULL")
                self._db = db
            return self._db
