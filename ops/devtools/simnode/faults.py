"""Fault injection: what is wrong with the node right now, kept in ``DIR/faults.json``.

The file is the single source of truth: the node writes it at start-up from its constructor or
CLI flags, looks at it on every connection and every command, and an operator or a test edits
it while the node runs. Looking is mostly a ``stat``: a parse is kept while the file's inode,
size and times stay as they were, once the file was already older than ``SETTLED_NS`` when it
was parsed. A newer file is parsed on every look, as git treats a "racily clean" index: on a
coarse clock a second write within one tick can keep the times, and an inode freed by an atomic
replace comes back on the next one. The node's own writes drop the parse at once.
Format (every key optional)::

    {
      "refuse": false,         # true: the SSH listener is closed; new connections are refused
      "hang": false,           # true: connections are accepted but commands never answer
      "fail_next": 0,          # the next N commands fail (the node counts it down in the file)
      "fail_code": 15,         # ... with this exit code (E_CONNECT by default)
      "latency_ms": 0,         # added to every command
      "fail_commands": {},     # {"v-add-web-domain": 2}: that command always exits with that code
      "slow_commands": {},     # {"v-add-user": 1500}: that command takes this many ms more
      "held_commands": []      # ["v-list-users"]: that command is held (started, counted as
                               # running, not answered) until it is taken off this list
    }

A held command is a gate a test opens when it chooses (``set_faults`` without it), rather
than a delay it must guess: the command looks at the file every ``HELD_LOOK_S`` until then.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from ops.devtools.simnode.state import write_atomically

SETTLED_NS = 100_000_000  # a file this much older than its parse cannot change unseen
HELD_LOOK_S = 0.02  # how often a held command looks whether it may go on


@dataclass
class Faults:
    refuse: bool = False
    hang: bool = False
    fail_next: int = 0
    fail_code: int = 15
    latency_ms: int = 0
    fail_commands: dict[str, int] = field(default_factory=dict)
    slow_commands: dict[str, int] = field(default_factory=dict)
    held_commands: list[str] = field(default_factory=list)

    @classmethod
    def from_json(cls, data: dict[str, object]) -> Faults:
        known = {k: data[k] for k in asdict(cls()) if k in data}
        return cls(**known)  # type: ignore[arg-type]


class FaultFile:
    """``DIR/faults.json``: consumes the directory, emits the current ``Faults``."""

    def __init__(self, data_dir: Path) -> None:
        self.path = data_dir / "faults.json"
        self._kept: tuple[tuple[int, ...], Faults] | None = None  # a settled file's parse

    def read(self) -> Faults:
        """The faults as the file has them now (a copy the caller may change)."""
        try:
            seen = os.stat(self.path)
        except FileNotFoundError:
            return Faults()
        identity = (seen.st_ino, seen.st_size, seen.st_mtime_ns, seen.st_ctime_ns)
        if self._kept is not None and self._kept[0] == identity:
            faults = self._kept[1]
        else:
            parsed_at = time.time_ns()
            parsed = self._parse()
            settled = max(seen.st_mtime_ns, seen.st_ctime_ns) < parsed_at - SETTLED_NS
            self._kept = (identity, parsed) if parsed is not None and settled else None
            faults = parsed or Faults()
        return replace(
            faults,
            fail_commands=dict(faults.fail_commands),
            slow_commands=dict(faults.slow_commands),
            held_commands=list(faults.held_commands),
        )

    def _parse(self) -> Faults | None:
        try:
            return Faults.from_json(json.loads(self.path.read_text(encoding="utf-8") or "{}"))
        except (FileNotFoundError, json.JSONDecodeError):
            # A file half-written by a hand editor counts as "no faults" until it is whole.
            return None

    def write(self, faults: Faults) -> None:
        self._kept = None
        write_atomically(self.path, json.dumps(asdict(faults), indent=2) + "\n")

    def take_failure(self, faults: Faults | None = None) -> int | None:
        """Count one command against ``fail_next``/… : the exit code to fail it with, if any
        (``faults``: as just read, to spare reading them again)."""
        faults = faults if faults is not None else self.read()
        if faults.fail_next <= 0:
            return None
        faults.fail_next -= 1
        self.write(faults)
        return faults.fail_code

    def mtime(self) -> float:
        try:
            return self.path.stat().st_mtime
        except FileNotFoundError:
            return 0.0
