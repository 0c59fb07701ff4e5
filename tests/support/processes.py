"""hostwright's own CLI as real processes, so tests can SIGKILL, SIGSTOP and restart them.

Each process leads a process group of its own (what it starts, ``hostwright up``'s parts, dies
with it, and a Ctrl-C at the terminal reaches pytest only, which then stops them), carries the
run's mark (``run_leftovers.RUN_MARK``) for the sweep of a later run, and is listed in
``STARTED`` until it is stopped, so the session's end kills whatever a test left running.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path

from tests.support.budget import budget
from tests.support.run_leftovers import RUN_MARK, this_run

PR_SET_PDEATHSIG = 1
try:  # looked up here, not in the forked child: an import there could wait on a lock forever
    _PRCTL = getattr(ctypes.CDLL(None, use_errno=True), "prctl", None)
except OSError:
    _PRCTL = None


def _die_with_parent() -> None:
    """In the child before exec: SIGKILL when the pytest that started it dies, even by
    SIGKILL (Linux; elsewhere the next run's sweep removes it)."""
    if _PRCTL is not None:
        _PRCTL(PR_SET_PDEATHSIG, signal.SIGKILL)


class HostwrightProcess:
    def __init__(self, args: list[str], env: Mapping[str, str], log_dir: Path, name: str) -> None:
        self.args = args
        self.env = {**os.environ, **env, RUN_MARK: str(this_run())}
        self.log_path = log_dir / f"{name}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> HostwrightProcess:
        log = self.log_path.open("ab")
        # the death signal is tied to the thread that forks: only the main thread lives as
        # long as the run
        in_main = threading.current_thread() is threading.main_thread()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "ops.cli", *self.args],
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=Path(__file__).resolve().parent.parent,
            start_new_session=True,
            preexec_fn=_die_with_parent if in_main else None,
        )
        log.close()
        STARTED.add(self)
        return self

    def kill(self) -> None:
        """SIGKILL: no cleanup, no graceful stop — a crash."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(budget(10))

    def terminate(self, timeout: float = 15) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(budget(timeout))

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def __enter__(self) -> HostwrightProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        """SIGKILL to the whole group, even when its leader is gone already (a killed ``up``
        leaves its parts behind)."""
        STARTED.discard(self)
        if self.proc is None:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(budget(10))


STARTED: set[HostwrightProcess] = set()


def stop_all_started() -> None:
    """What the session's end runs: every process a test started and did not stop."""
    for process in list(STARTED):
        process.__exit__()


def wait_for(condition: Callable[[], bool], timeout: float, what: str) -> None:
    """Waits ``timeout`` seconds scaled by ``budget``."""
    timeout = budget(timeout)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.02)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")
