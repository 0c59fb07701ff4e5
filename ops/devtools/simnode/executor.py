"""From an SSH command line to a Hestia answer, with the node's faults and its record.

``CommandExecutor.execute(user, line)`` consumes the exec request's command line and the SSH
user name (``execute_words``: a command session's line, already split), and emits a
``CommandResult``. The line is split with ``shlex.split`` and never given
to a shell; a leading ``sudo`` is dropped; ``/usr/local/hestia/bin/v-…`` and ``v-…`` are the same
command. The state is saved to disk after every command that changed it.

Commands run one at a time, each atomic, except for the one window a real node has in its SSL
installs: Hestia tests a key pair with ``pkill openssl; openssl s_server … & sleep 0.5; kill
$pid``, so a second install's test kills the first one's s_server and the first fails (exit 2).
``OpensslWindow`` holds that window for ``ssl_check_ms`` while other commands run.
"""

from __future__ import annotations

import asyncio
import contextlib
import shlex
from datetime import UTC, datetime
from pathlib import Path

from ops.devtools.simnode.commands import (
    CommandResult,
    Node,
    finish_install,
    run_command,
)
from ops.devtools.simnode.faults import HELD_LOOK_S, FaultFile
from ops.devtools.simnode.journal import Journal
from ops.devtools.simnode.state import StateFile

HESTIA_BIN = "/usr/local/hestia/bin/"


def parse_command_line(line: str) -> list[str] | None:
    """The argv Hestia would run, bare command name first; ``None`` if it is no Hestia command."""
    try:
        return hestia_argv(shlex.split(line))
    except ValueError:
        return None


def hestia_argv(words: list[str]) -> list[str] | None:
    """``parse_command_line`` for a line already split into words."""
    argv = words
    if argv and argv[0] == "sudo":
        argv = argv[1:]
    if not argv:
        return None
    name = argv[0].removeprefix(HESTIA_BIN)
    if "/" in name or not name.startswith("v-"):
        return None
    return [name, *argv[1:]]


class OpensslWindow:
    """The node's key-pair tests still in their window (each an ``openssl s_server``)."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self._running: list[asyncio.Event] = []  # set: that test's s_server was killed

    @property
    def running(self) -> int:
        return len(self._running)

    async def test(self) -> bool:
        """Runs one test: True when another test's ``pkill openssl`` killed it. A killed test
        ends at once (its outcome is settled); one left alone takes the whole window."""
        for other in self._running:  # pkill openssl
            other.set()
        killed = asyncio.Event()
        self._running.append(killed)
        try:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(killed.wait(), self.seconds)
        finally:
            self._running.remove(killed)
        return killed.is_set()


class CommandExecutor:
    """Runs commands against the node's state in ``data_dir``."""

    def __init__(
        self, data_dir: Path, roles: frozenset[str], ip: str, *, ssl_check_ms: int = 50
    ) -> None:
        self.fs_root = data_dir / "fs"
        (self.fs_root / "tmp").mkdir(parents=True, exist_ok=True)  # every host has one
        self.roles = roles
        self.ip = ip
        self.store = StateFile(data_dir)
        self.state = self.store.load()
        self.faults = FaultFile(data_dir)
        self.journal = Journal(data_dir)
        self.openssl = OpensslWindow(ssl_check_ms / 1000)

    async def execute(self, user: str, line: str) -> CommandResult:
        """Runs an exec request's command line."""
        argv = parse_command_line(line)
        return await self._execute(user, argv, [] if argv else _words(line))

    async def execute_words(self, user: str, words: list[str]) -> CommandResult:
        """Runs a command a session's ``hw_run`` was given, already split into words."""
        return await self._execute(user, hestia_argv(words), words)

    async def _execute(self, user: str, argv: list[str] | None, words: list[str]) -> CommandResult:
        shown = argv or words
        started = datetime.now(UTC)
        self.journal.started()
        result: CommandResult | None = None
        try:
            result = await self._run(argv, shown)
            return result
        finally:
            self.journal.finished(
                shown,
                user,
                started,
                datetime.now(UTC),
                result.exit_code if result else None,
                result.changed if result else False,
            )

    async def _run(self, argv: list[str] | None, shown: list[str]) -> CommandResult:
        faults = self.faults.read()
        if faults.hang:
            await asyncio.Event().wait()
        while argv and argv[0] in faults.held_commands:  # until the test opens the gate
            await asyncio.sleep(HELD_LOOK_S)
            faults = self.faults.read()
        delay_ms = faults.latency_ms + (faults.slow_commands.get(argv[0], 0) if argv else 0)
        if delay_ms > 0:
            await asyncio.sleep(delay_ms / 1000)
            faults = self.faults.read()  # changed while this command waited, perhaps
        code = self.faults.take_failure(faults)
        if code is not None:
            return CommandResult(code, "Error: simulated failure\n")
        if argv is None:
            name = shown[0] if shown else ""
            return CommandResult(127, "", f"bash: {name}: command not found\n")
        if argv[0] in faults.fail_commands:
            return CommandResult(faults.fail_commands[argv[0]], "Error: simulated failure\n")
        node = Node(self.state, self.roles, self.ip, self.fs_root)
        result = run_command(node, argv)
        if result.pending is not None:
            killed = await self.openssl.test()
            result = finish_install(node, result.pending, killed=killed)
        if result.changed:
            self.store.save(self.state)
        return result


def _words(line: str) -> list[str]:
    try:
        return shlex.split(line)
    except ValueError:
        return [line]
