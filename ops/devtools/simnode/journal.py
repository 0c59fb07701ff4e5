"""The record of what a node was asked to do: ``DIR/commands.jsonl`` and ``DIR/stats.json``.

Each finished command appends one JSON line ``{"argv", "user", "started", "finished",
"exit_code", "changed"}`` (passwords masked as Hestia's own log masks them). ``stats.json``
``{"running", "peak_running", "commands"}`` is rewritten at once when a start raises the peak,
and otherwise within ``STATS_DELAY_S`` of a command's start or end (at most once per such
delay: a rewrite per command was a tenth of a busy node's CPU), so a benchmark or a test can
read the node's peak concurrency and what is running while it runs.
``read_command_log`` and ``read_stats`` read them back.
"""

from __future__ import annotations

import asyncio
import json
from datetime import datetime
from pathlib import Path
from typing import Any

from ops.devtools.simnode.state import write_atomically

# Which argument (0-based, after the command name) holds a password (Hestia's HIDE=n).
_SECRET_ARG = {"v-add-user": 1, "v-change-user-password": 1, "v-add-mail-account": 3}
_SECRET_ARG["v-change-mail-account-password"] = 3
STATS_DELAY_S = 0.02


def masked(argv: list[str]) -> list[str]:
    """``argv`` with its password argument, if any, replaced by ``*****``."""
    index = _SECRET_ARG.get(argv[0]) if argv else None
    if index is None or index + 1 >= len(argv):
        return list(argv)
    return [*argv[: index + 1], "*****", *argv[index + 2 :]]


class Journal:
    """Consumes command starts and ends; emits the two files above."""

    def __init__(self, data_dir: Path) -> None:
        self.log_path = data_dir / "commands.jsonl"
        self.stats_path = data_dir / "stats.json"
        stats = read_stats(data_dir)
        self.running = 0
        self.peak = int(stats.get("peak_running", 0))
        self.total = int(stats.get("commands", 0))
        self._log = self.log_path.open("a", encoding="utf-8")
        self._stats_due: asyncio.TimerHandle | None = None

    def started(self) -> None:
        self.running += 1
        self.total += 1
        if self.running > self.peak:
            self.peak = self.running
            self._write_stats()
        else:
            self._stats_soon()

    def finished(
        self,
        argv: list[str],
        user: str,
        started: datetime,
        finished: datetime,
        exit_code: int | None,
        changed: bool,
    ) -> None:
        self.running -= 1
        entry = {
            "argv": masked(argv),
            "user": user,
            "started": started.isoformat(),
            "finished": finished.isoformat(),
            "exit_code": exit_code,
            "changed": changed,
        }
        self._log.write(json.dumps(entry) + "\n")
        self._log.flush()
        self._stats_soon()

    def reset_peak(self) -> None:
        self.peak = self.running
        self._write_stats()

    def flush(self) -> None:
        """Writes the stats now if a write is pending (the node is stopping)."""
        if self._stats_due is not None:
            self._write_stats()

    def _stats_soon(self) -> None:
        if self._stats_due is not None:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self._write_stats()
            return
        self._stats_due = loop.call_later(STATS_DELAY_S, self._write_stats)

    def _write_stats(self) -> None:
        if self._stats_due is not None:
            self._stats_due.cancel()
            self._stats_due = None
        stats = {"running": self.running, "peak_running": self.peak, "commands": self.total}
        write_atomically(self.stats_path, json.dumps(stats) + "\n")


def read_command_log(data_dir: Path | str) -> list[dict[str, Any]]:
    """Every command the node in ``data_dir`` has finished, oldest first."""
    path = Path(data_dir) / "commands.jsonl"
    if not path.exists():
        return []
    lines = path.read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines if line.strip()]


def read_stats(data_dir: Path | str) -> dict[str, Any]:
    """``{"running", "peak_running", "commands"}`` of the node in ``data_dir`` (empty if none)."""
    path = Path(data_dir) / "stats.json"
    try:
        data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    except (FileNotFoundError, json.JSONDecodeError):
        return {}
    return data
