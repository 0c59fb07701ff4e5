"""Group commit: many concurrent requests' aggregates saved in one store transaction.

The event store serialises writers (SQLite has one writer; eventsourcing's PostgreSQL
recorder takes an exclusive table lock per insert), so N requests saving one event each wait
in line for N transactions. Here a single writer thread drains every save waiting at that
moment and records them in one transaction; each caller still learns its own outcome. When
the combined transaction hits a conflict (one aggregate was written concurrently), the
round is retried one caller at a time, so only the caller whose aggregate conflicted sees
the IntegrityError and the others are unaffected.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

from eventsourcing.persistence import IntegrityError

_Item = tuple[tuple[Any, ...], "Future[None]"]


class GroupCommit:
    """Give it *events*, not aggregates: saving an aggregate empties its pending events, so a
    failed combined round could not be retried one caller at a time."""

    def __init__(self, save: Callable[..., Any], *, max_batch: int = 256) -> None:
        self._save = save
        self._max_batch = max_batch
        self._queue: queue.SimpleQueue[_Item | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self.rounds = 0

    def save(self, *events: Any) -> None:
        """Blocks until the events are recorded (all or none); raises what saving raised."""
        if not events:
            return
        self._ensure_writer()
        done: Future[None] = Future()
        self._queue.put((events, done))
        done.result()

    def close(self) -> None:
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join(10)
            self._thread = None

    def _ensure_writer(self) -> None:
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._write_rounds, name="group-commit", daemon=True
                )
                self._thread.start()

    def _write_rounds(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            batch = [first]
            while len(batch) < self._max_batch:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    self._queue.put(None)  # finish this round, then stop
                    break
                batch.append(item)
            self._write(batch)
            self.rounds += 1

    def _write(self, batch: list[_Item]) -> None:
        if len(batch) > 1:
            try:
                self._save(*(event for events, _ in batch for event in events))
            except IntegrityError:
                pass  # someone in the round conflicted: find out who, one by one
            except Exception as exc:  # every caller must hear of it
                for _, done in batch:
                    done.set_exception(exc)
                return
            else:
                for _, done in batch:
                    done.set_result(None)
                return
        for events, done in batch:
            try:
                self._save(*events)
            except Exception as exc:  # handed to the caller
                done.set_exception(exc)
            else:
                done.set_result(None)
