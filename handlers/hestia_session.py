"""Command sessions: Hestia commands run one after another in a shell kept open on an SSH channel.

Opening, running and closing an exec channel per command was most of the SSH cost of a command,
on both ends; a session is one ``SHELL_COMMAND`` per channel that is sent ``SHELL_PREAMBLE``
once and then one ``session_line`` per command. The preamble defines ``hw_run MARKER CMD…``: it
runs CMD with no stdin (stdin is the session's own input) and then writes "\\nMARKER EXIT\\n" to
stdout and "\\nMARKER\\n" to stderr, so the reader knows where the command's output ends. MARKER
is random per session, so no output can fake it.

``CommandSessions(pool, ...)`` consumes a ``ConnectionPool`` and an argv and emits (exit status,
stdout, stderr): it takes a kept idle session or opens one on a connection with room for it,
keeps up to ``IDLE_SESSIONS_KEPT`` for the next commands, and answers ``None`` when no
connection can hold one more (the caller then uses an exec channel). SSH trouble and timeouts
raise ``TransientNodeError``.
"""

from __future__ import annotations

import asyncio
import re
import secrets
import shlex
from collections.abc import Sequence
from dataclasses import dataclass

import asyncssh

from handlers.hestia_command import HESTIA_BIN, check_argv, transient_error
from handlers.hestia_pool import ConnectionPool, PooledConnection

SHELL_COMMAND = "bash --noprofile --norc"
SHELL_PREAMBLE = (
    'hw_run() { m=$1; shift; "$@" </dev/null; rc=$?; '
    'printf \'\\n%s %d\\n\' "$m" "$rc"; printf \'\\n%s\\n\' "$m" >&2; }'
)
SHELL_RUNNER = "hw_run"
# Idle shells kept for the next commands; more are closed (each is a process on the node).
IDLE_SESSIONS_KEPT = 16


def fits_a_session(argv: Sequence[str]) -> bool:
    """Whether ``argv`` can be one line of a command session: no argument holds a line break
    (such a command goes over an exec channel of its own)."""
    return not any("\n" in item or "\r" in item for item in argv)


def session_line(marker: str, argv: Sequence[str]) -> str:
    """The line a command session runs for ``argv`` (with its newline); ``argv`` must
    ``fits_a_session``."""
    items = check_argv(argv)
    if not fits_a_session(items):
        raise ValueError(f"{items[0]}: an argument holds a line break")
    return shlex.join([SHELL_RUNNER, marker, "sudo", HESTIA_BIN + items[0], *items[1:]]) + "\n"


class _NotSent(Exception):
    """The command line could not be written: the command never ran."""


@dataclass(eq=False)
class CommandSession:
    """One shell on ``slot``'s connection that has run the preamble; one command at a time."""

    slot: PooledConnection
    process: asyncssh.SSHClientProcess[str]
    marker: str

    def __post_init__(self) -> None:
        marker = re.escape(self.marker)
        self._out_end = re.compile(f"\n{marker} (\\d+)\n\\Z")
        self._err_end = re.compile(f"\n{marker}\n\\Z")

    @property
    def usable(self) -> bool:
        return not self.slot.conn.is_closed() and not self.process.is_closing()

    async def run(self, line: str) -> tuple[int, str, str]:
        """(exit status, stdout, stderr) of one ``session_line``."""
        try:
            self.process.stdin.write(line)
        except (asyncssh.Error, OSError) as exc:
            raise _NotSent(exc) from exc
        out, status = await _read_to_end(self.process.stdout, self._out_end)
        err, _ = await _read_to_end(self.process.stderr, self._err_end)
        return int(status[1]), out, err

    def close(self) -> None:
        self.process.close()


async def _read_to_end(
    stream: asyncssh.SSHReader[str], end: re.Pattern[str]
) -> tuple[str, re.Match[str]]:
    """What ``stream`` sends up to ``end`` (the command's last line, matched at the end of
    what has arrived), and the match. Read in chunks into a buffer of our own: asyncssh's
    ``readuntil`` gives up once its buffer holds a whole window (2 MiB) without the end."""
    parts: list[str] = []
    tail = ""
    while True:
        chunk = await stream.read(65536)
        if not chunk:
            raise asyncio.IncompleteReadError("".join(parts).encode(), None)
        parts.append(chunk)
        tail = (tail + chunk)[-128:]
        found = end.search(tail)
        if found is not None:
            text = "".join(parts)
            return text[: len(text) - len(tail) + found.start()], found


class CommandSessions:
    """The sessions of one driver: busy ones on their connections, idle ones kept."""

    def __init__(
        self, pool: ConnectionPool, *, command_timeout: float, open_timeout: float
    ) -> None:
        self._pool = pool
        self._command_timeout = command_timeout
        self._open_timeout = open_timeout
        self.idle: list[CommandSession] = []
        self.opened = 0  # for tests and metrics: how many shells we started

    async def run(self, argv: Sequence[str]) -> tuple[int, str, str] | None:
        """(exit status, stdout, stderr) of ``argv`` run in a session; ``None`` when every
        connection holds its most sessions, all busy."""
        server_id = self._pool.access.server_id
        # A line that could not even be written never ran, so it is safe to try once more on
        # a fresh session (a kept one may have died while idle).
        for attempt in (1, 2):
            session = await self._take(argv)
            if session is None:
                return None
            try:
                async with asyncio.timeout(self._command_timeout):
                    answer = await session.run(session_line(session.marker, argv))
            except _NotSent as exc:
                self._drop(session)
                if attempt == 2:
                    raise transient_error(server_id, argv, f"could not start it: {exc}") from exc
                continue
            except TimeoutError:
                # Only this session is abandoned; the connection itself may be fine.
                self._drop(session)
                why = f"no answer within {self._command_timeout:g}s"
                raise transient_error(server_id, argv, why) from None
            except (asyncssh.Error, OSError, asyncio.IncompleteReadError) as exc:
                self._drop(session)
                if session.slot.conn.is_closed():
                    self._pool.discard(session.slot)
                why = f"the connection failed: {exc}"
                raise transient_error(server_id, argv, why) from exc
            except BaseException:
                self._drop(session)  # cancelled mid-command: where it stands is unknown
                raise
            finally:
                session.slot.busy -= 1
            self._give_back(session)
            return answer
        raise AssertionError("unreachable")

    def close_one_idle(self) -> bool:
        """Closes the longest idle session, if any, so its channel can be used otherwise."""
        if not self.idle:
            return False
        self._drop(self.idle.pop(0))
        return True

    async def _take(self, argv: Sequence[str]) -> CommandSession | None:
        """A kept idle session, or a new one on a connection with room for it; ``None`` when
        the pool is full and no connection has room."""
        while self.idle:
            session = self.idle.pop()
            if session.usable:
                session.slot.busy += 1
                return session
            self._drop(session)
        slot = await self._pool.pick(for_session=True)
        if slot is None:
            return None
        try:
            # A connection that died silently would otherwise hold this open for hours.
            async with asyncio.timeout(self._open_timeout):
                process = await slot.conn.create_process(
                    SHELL_COMMAND, encoding="utf-8", errors="replace"
                )
            process.stdin.write(SHELL_PREAMBLE + "\n")
        except BaseException as exc:
            slot.busy -= 1
            slot.sessions -= 1
            if not isinstance(exc, asyncssh.Error | OSError | TimeoutError):
                raise  # cancelled, say: the connection is not to blame
            self._pool.discard(slot)
            why = f"could not start a command session: {exc}"
            raise transient_error(self._pool.access.server_id, argv, why) from exc
        self.opened += 1
        return CommandSession(slot, process, "hw-end-" + secrets.token_hex(8))

    def _give_back(self, session: CommandSession) -> None:
        if self._pool.closed or not session.usable or len(self.idle) >= IDLE_SESSIONS_KEPT:
            self._drop(session)
        else:
            self.idle.append(session)

    def _drop(self, session: CommandSession) -> None:
        session.slot.sessions -= 1
        session.close()
