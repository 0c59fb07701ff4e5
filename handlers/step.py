"""What every step action shares: the driver port, the log, the outcome, and param checks.

A step action is ``async (driver, params, inputs, log) -> StepOutcome``: it consumes a
``NodeDriver`` for one node, the task's ``params`` (what the planner wants), the ``inputs``
(outputs of the steps it depends on) and a ``StepLog``; it probes, applies only what is missing
or drifted, verifies, and emits ``StepOutcome(changed, outputs)``. It raises ``NodeError`` when
the node fails (``TransientNodeError`` / ``PermanentNodeError``) and ``StepParamsError`` when
its params are unusable (a planner bug: never retried).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from handlers.hestia_command import CommandResult, TransientNodeError, error_for, shown


class NodeDriver(Protocol):
    """What steps need from a node driver; ``HestiaDriver`` is the real one."""

    @property
    def server_id(self) -> str: ...

    async def run(self, argv: Sequence[str]) -> CommandResult: ...

    async def list_json(self, argv: Sequence[str]) -> Any: ...

    async def probe_json(self, argv: Sequence[str]) -> Any | None: ...

    async def put_file(self, path: str, data: bytes, *, mode: int = 0o600) -> None: ...

    async def remove_file(self, path: str) -> None: ...

    async def put_private_files(self, directory: str, files: Mapping[str, bytes]) -> str:
        """``directory`` (relative to our login's home, every folder on the way ours and
        0700) made afresh (mode 0700, anything there before removed) holding ``files``
        (plain names, mode 0600, created exclusively); emits its absolute path."""

    async def put_fresh_file(self, root: str, name: str, data: bytes, *, mode: int) -> str:
        """``data`` as ``<root>/<random>/<name>`` in a folder made for it alone (``root``
        ours, writable by no one else); emits the file's path."""

    async def remove_tree(self, directory: str) -> None:
        """``directory`` (absolute or relative to our home) and everything in it gone; a
        missing one is fine."""


class StepParamsError(ValueError):
    """The task's params cannot be used (missing, wrong type, unsafe); a planner bug."""


@dataclass
class StepOutcome:
    changed: bool
    outputs: dict[str, Any] = field(default_factory=dict)


class StepLog:
    """Human-readable lines for the task's log; commands appear with passwords masked.
    ``on_line`` (a role handler's live sink: handlers/live_lines.py) gets each line as it is
    noted, the same text the log keeps; it must return at once and never raise."""

    def __init__(self, on_line: Callable[[str], None] | None = None) -> None:
        self.lines: list[str] = []
        self._on_line = on_line

    def note(self, text: str) -> None:
        self.lines.append(text)
        if self._on_line is not None:
            self._on_line(text)

    def ran(self, argv: Sequence[str], result: CommandResult) -> None:
        self.note(f"$ {shown(argv)} -> exit {result.exit_status} ({result.duration_ms:.0f} ms)")


StepAction = Callable[[NodeDriver, dict[str, Any], dict[str, Any], StepLog], Awaitable[StepOutcome]]


async def apply(
    driver: NodeDriver, log: StepLog, argv: Sequence[str], *, also_ok: Sequence[int] = ()
) -> int:
    """Runs a changing command; its exit status if 0 or in ``also_ok``, else the NodeError."""
    result = await driver.run(argv)
    log.ran(argv, result)
    if result.exit_status == 0 or result.exit_status in also_ok:
        return result.exit_status
    raise error_for(driver.server_id, argv, result)


async def remove_domain(
    driver: NodeDriver,
    log: StepLog,
    what: str,
    user: str,
    probe: Callable[[], Awaitable[Any | None]],
    argv: Sequence[str],
) -> StepOutcome:
    """The removal steps' one shape: ``what`` (a web/mail domain, a DNS zone of ``user``)
    absent already → unchanged; else ``argv`` deletes it (exit 3, gone meanwhile, is fine)
    and the probe must no longer find it."""
    if await probe() is None:
        log.note(f"{what}: already absent for {user}")
        return StepOutcome(False)
    changed = await apply(driver, log, argv, also_ok=(3,)) == 0
    if await probe() is not None:
        raise TransientNodeError(f"{driver.server_id}: {what} is still present")
    return StepOutcome(changed)


async def listed_domain(
    driver: NodeDriver, kind: str, user: str, domain: str
) -> dict[str, Any] | None:
    """``user``'s ``kind`` (``web``, ``mail`` or ``dns``) domain as ``v-list-<kind>-domain``
    shows it, or ``None`` when the user has no such domain."""
    found = await driver.probe_json([f"v-list-{kind}-domain", user, domain])
    return None if found is None else found.get(domain, {})


def text(params: dict[str, Any], name: str, default: str | None = None) -> str:
    """A required (or defaulted) one-line string param."""
    value = params.get(name, default)
    if value is None:
        raise StepParamsError(f"param {name!r} is required")
    return _one_line(name, value)


def optional_text(params: dict[str, Any], name: str) -> str | None:
    value = params.get(name)
    return None if value is None else _one_line(name, value)


def flag(params: dict[str, Any], name: str, default: bool) -> bool:
    value = params.get(name, default)
    if not isinstance(value, bool):
        raise StepParamsError(f"param {name!r} must be true or false")
    return value


def text_list(params: dict[str, Any], name: str) -> list[str]:
    value = params.get(name, [])
    if not isinstance(value, list):
        raise StepParamsError(f"param {name!r} must be a list of strings")
    return [_one_line(name, item) for item in value]


def domain_name(params: dict[str, Any], name: str = "domain") -> str:
    """A domain as Hestia keeps it: lower case, no trailing dot."""
    return text(params, name).lower().rstrip(".")


def _one_line(name: str, value: object) -> str:
    if not isinstance(value, str):
        raise StepParamsError(f"param {name!r} must be a string")
    if not value or "\n" in value or "\x00" in value:
        raise StepParamsError(f"param {name!r} must be one non-empty line")
    return value
