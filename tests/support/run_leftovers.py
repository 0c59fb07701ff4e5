"""What one test run leaves on the machine, and its removal: the ``hostwright`` processes it
started, its ``hw_test_*`` databases, its ``hw-test-*`` exchanges and their queues.

Every one of them carries the pytest process's id (``RUN_MARK`` in a process's environment, in
a database's name, in a ledger file for the broker, which cannot list its exchanges without the
management plugin), so a run removes its own leftovers at its end and the leftovers of runs
that are no longer alive (killed with SIGKILL, a machine reboot) at its start. A run that is
still alive — another checkout's, another user's — is never touched, and nothing without the
mark is: the sweep cannot remove what this harness did not make.
"""

from __future__ import annotations

import contextlib
import os
import signal
import tempfile
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg

from ops.messaging.amqp_transport import AmqpTransport
from ops.messaging.topology import QUEUES

# in a started process's environment: the owning run's pid (not HOSTWRIGHT_*: no setting)
RUN_MARK = "HW_TEST_RUN"
DATABASE_PREFIX = "hw_test_"
EXCHANGE_PREFIX = "hw-test-"
LEDGERS = Path(tempfile.gettempdir()) / "hostwright-test-runs"
# queues tests declare by a fixed name on their own exchange (not through ``queue_names``)
FIXED_TEST_QUEUES = ("collector", "watch", "tasks")

Owned = Callable[[int], bool]  # which runs' leftovers to remove, by the run's pid


def this_run() -> int:
    return os.getpid()


def database_name() -> str:
    return f"{DATABASE_PREFIX}{this_run()}_{uuid.uuid4().hex[:10]}"


def exchange_name() -> str:
    """A new exchange of this run's, written to its ledger before anything declares it."""
    name = f"{EXCHANGE_PREFIX}{this_run()}-{uuid.uuid4().hex[:10]}"
    note_broker_name("exchange", name)
    return name


def note_broker_name(*words: str) -> None:
    """A ledger line: ``exchange NAME`` (its dead-letter exchange and ``QUEUES`` go with it),
    ``queue EXCHANGE NAME`` (a test's own queue as it named it to a transport, and its
    ``.dead``) or ``removed NAME`` (a test's own clean-up removed the exchange and its queues:
    the sweep need not)."""
    LEDGERS.mkdir(exist_ok=True)
    with (LEDGERS / f"{this_run()}.ledger").open("a") as ledger:
        ledger.write(" ".join(words) + "\n")


def run_of(name: str, prefix: str, separator: str) -> int | None:
    """The pid in a database's or exchange's name; None for names of the old unmarked form."""
    if not name.startswith(prefix):
        return None
    pid, _, rest = name[len(prefix) :].partition(separator)
    return int(pid) if pid.isdigit() and rest else None


def is_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's live process
    return True


def dead_run(pid: int) -> bool:
    return pid != this_run() and not is_alive(pid)


def run_of_process(pid: int) -> int | None:
    """The run mark in a process's environment (None when unreadable or unmarked)."""
    try:
        environ = Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return None
    for entry in environ.split(b"\0"):
        key, _, value = entry.partition(b"=")
        if key == RUN_MARK.encode() and value.isdigit():
            return int(value)
    return None


def marked_processes(owned: Owned) -> list[int]:
    """Needs /proc (Linux); elsewhere it finds none, and processes go with their group only."""
    found: list[int] = []
    if not Path("/proc").is_dir():
        return found
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            run = run_of_process(int(entry.name))
            if run is not None and owned(run):
                found.append(int(entry.name))
    return found


def kill_processes(owned: Owned) -> None:
    for pid in marked_processes(owned):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)


def marked_databases(postgres_url: str, owned: Owned) -> list[str]:
    with psycopg.connect(postgres_url, autocommit=True, connect_timeout=10) as conn:
        rows = conn.execute(
            "SELECT datname FROM pg_database WHERE datname LIKE %s", (DATABASE_PREFIX + "%",)
        ).fetchall()
    names = [row[0] for row in rows]
    return [n for n in names if (run := run_of(n, DATABASE_PREFIX, "_")) is not None and owned(run)]


def drop_databases(postgres_url: str, owned: Owned) -> None:
    names = marked_databases(postgres_url, owned)
    with psycopg.connect(postgres_url, autocommit=True, connect_timeout=10) as conn:
        for name in names:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def ledgers(owned: Owned) -> Iterator[tuple[Path, list[list[str]]]]:
    if not LEDGERS.is_dir():
        return
    for path in LEDGERS.glob("*.ledger"):
        if path.stem.isdigit() and owned(int(path.stem)):
            try:
                text = path.read_text()
            except FileNotFoundError:
                continue  # the other worker of this run swept that dead run a moment ago
            yield path, [line.split() for line in text.splitlines() if line]


async def delete_broker_names(amqp_url: str, owned: Owned) -> None:
    """Deletes the exchanges and queues in the owned runs' ledgers, then the ledgers."""
    for path, entries in ledgers(owned):
        left: dict[str, None] = {}  # in order; one declared again after its removal counts
        for words in entries:
            if words[0] == "removed":
                left.pop(words[1], None)
            else:
                left[words[1]] = None
        for exchange in left:
            named = [w[2] for w in entries if w[0] == "queue" and w[1] == exchange]
            transport = AmqpTransport(amqp_url, exchange, timeout=10.0)
            await transport.connect()  # declares the exchange again, deleted below
            try:
                for queue in [*QUEUES, *FIXED_TEST_QUEUES, *named]:
                    await transport.delete_queue(queue)
                    await transport.delete_queue(f"{queue}.dead")
                await transport.delete_exchange()
            finally:
                await transport.close()
        # both workers of a run sweep the dead runs at their start: the other may be first
        path.unlink(missing_ok=True)
