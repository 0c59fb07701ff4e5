"""One HestiaCP command: how its argv is checked and shown, its result, and what its exit means.

``command_line(argv)`` consumes an argv (bare ``v-…`` name first, every item a ``str``) and emits
the exact line sent over SSH: ``sudo /usr/local/hestia/bin/v-… ARG…`` quoted with
``shlex.join`` — never a shell string built by hand. ``masked(argv)`` is the argv as logs show it
(passwords replaced, as Hestia's own log does). ``error_for(...)`` turns a non-zero exit into a
``TransientNodeError`` (retry: 14 load, 15 connect, 20 restart) or a ``PermanentNodeError``
(everything else: 1 args, 2 invalid, 8 limit, 9 password, 10 forbidden, 11 disabled, …).
Exit 3 (not exist) and 4 (exists) are answers the steps interpret before they get here.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Sequence
from dataclasses import dataclass

HESTIA_BIN = "/usr/local/hestia/bin/"
COMMAND_NAME = re.compile(r"^v-[a-z0-9-]+$")
TRANSIENT_EXITS = frozenset({14, 15, 20})
EXIT_NAMES = {
    1: "args",
    2: "invalid",
    3: "not exist",
    4: "exists",
    5: "suspended",
    6: "unsuspended",
    7: "in use",
    8: "limit",
    9: "password",
    10: "forbidden",
    11: "disabled",
    12: "parsing",
    13: "disk",
    14: "load",
    15: "connect",
    16: "ftp",
    17: "db",
    18: "rrd",
    19: "update",
    20: "restart",
    127: "command not found",
}
# Which argument (0-based, after the command name) is a password (Hestia's HIDE=n).
_SECRET_ARG = {
    "v-add-user": 1,
    "v-change-user-password": 1,
    "v-add-mail-account": 3,
    "v-change-mail-account-password": 3,
}
MASK = "*****"


class NodeError(Exception):
    """A step could not be done on a node; ``retryable`` says whether trying again may help.

    The message is meant for an operator: it names the server and the (masked) command, and
    never carries a password.
    """

    retryable = False

    def __init__(self, message: str, *, exit_status: int | None = None) -> None:
        super().__init__(message)
        self.exit_status = exit_status


class TransientNodeError(NodeError):
    """SSH trouble, a timeout, or a Hestia exit that says "later" (14, 15, 20)."""

    retryable = True


class PermanentNodeError(NodeError):
    """Retrying will not help: bad arguments, a limit, a conflict with another owner, …"""


@dataclass(frozen=True)
class CommandResult:
    exit_status: int
    stdout: str
    stderr: str
    duration_ms: float


def check_argv(argv: Sequence[str]) -> list[str]:
    """``argv`` as a list, or ValueError if the name is no Hestia command or an item no text."""
    items = list(argv)
    if not items or not isinstance(items[0], str) or not COMMAND_NAME.fullmatch(items[0]):
        raise ValueError(f"not a Hestia command name: {items[:1]!r}")
    for item in items:
        if not isinstance(item, str):
            raise ValueError(f"{items[0]}: argument {item!r} is not a string")
        if "\x00" in item:
            # NUL cannot travel in an SSH exec request; refuse it rather than truncate.
            raise ValueError(f"{items[0]}: an argument contains NUL")
    return items


def command_line(argv: Sequence[str]) -> str:
    """The line sent over SSH for ``argv``."""
    items = check_argv(argv)
    return shlex.join(["sudo", HESTIA_BIN + items[0], *items[1:]])


def masked(argv: Sequence[str]) -> list[str]:
    """``argv`` with its password argument, if any, replaced by ``*****``."""
    items = list(argv)
    index = _SECRET_ARG.get(items[0]) if items else None
    if index is None or index + 1 >= len(items):
        return items
    return [*items[: index + 1], MASK, *items[index + 2 :]]


def shown(argv: Sequence[str]) -> str:
    """``argv`` masked and joined for a human (quoted where a word needs it)."""
    return shlex.join(masked(argv))


def scrub(text: str, argv: Sequence[str]) -> str:
    """``text`` with the password of ``argv`` (if it has one) blanked wherever it appears."""
    items = list(argv)
    index = _SECRET_ARG.get(items[0]) if items else None
    if index is None or index + 1 >= len(items) or not items[index + 1]:
        return text
    return text.replace(items[index + 1], MASK)


def transient_error(server_id: str, argv: Sequence[str], why: str) -> TransientNodeError:
    """SSH trouble while running ``argv``: ``why`` is what went wrong."""
    return TransientNodeError(f"{server_id}: {shown(argv)}: {why}")


def error_for(server_id: str, argv: Sequence[str], result: CommandResult) -> NodeError:
    """The error a failed command stands for, with Hestia's own message (scrubbed)."""
    code = result.exit_status
    said = (result.stdout.strip() or result.stderr.strip()).splitlines()
    detail = scrub(" / ".join(said)[:400], argv)
    name = EXIT_NAMES.get(code, "error")
    message = f"{server_id}: {shown(argv)} exited {code} ({name})" + (
        f": {detail}" if detail else ""
    )
    kind = TransientNodeError if code in TRANSIENT_EXITS else PermanentNodeError
    return kind(message, exit_status=code)
