"""A test run stopped in the middle — Ctrl-C, SIGTERM, even SIGKILL — leaves nothing behind:
no ``hostwright serve`` process, no ``hw_test_*`` database, no ``hw-test-*`` exchange or queue.

Each case runs pytest as a process of its own on a small deployment test (every part of
hostwright as a process, on PostgreSQL and RabbitMQ), waits until all of it is up, stops that
pytest, then looks for what the run made. SIGKILL leaves no time for clean-up: there the next
run's start removes the dead run's leftovers.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import aio_pika
import psycopg
import pytest

from ops.messaging.topology import QUEUES
from tests.support import run_leftovers
from tests.support.budget import budget
from tests.support.deployment import PARTS
from tests.support.processes import wait_for
from tests.support.worker_groups import POSTGRES_DEPLOYMENTS

# every test here in the deployments' group, also the one without PostgreSQL: its sweep acts
# machine-wide and, on the other xdist worker, could remove what a killed inner run left
# before the test that checks the next run's sweep gets to look
pytestmark = POSTGRES_DEPLOYMENTS

REPO = Path(__file__).resolve().parents[2]

INNER_TEST = """
import asyncio
import json
from pathlib import Path

import pytest

from ops.messaging.amqp_transport import AmqpTransport
from tests.support.deployment import Deployment
from tests.support.transports import QueueNames, clean_broker


@pytest.fixture
async def system(tmp_path, amqp_url, exchange_name, fresh_postgres_url):
    system = Deployment(tmp_path, amqp_url, exchange_name, fresh_postgres_url)
    try:
        await system.start_all()
        yield system
    finally:
        await system.close()


@pytest.fixture
async def own_queue(amqp_url, exchange_name):
    names = QueueNames(exchange_name)
    transport = AmqpTransport(amqp_url, exchange_name)
    await transport.connect()
    try:
        name = names("own")
        await transport.declare_queue(name, ["Service.#"])
        yield transport.queue_name(name)
    finally:
        await transport.close()
        await clean_broker(amqp_url, exchange_name, names)


async def test_holds_a_deployment(system, own_queue):
    report = {
        "exchange": system.exchange,
        "database": system.database_url.rsplit("/", 1)[1],
        "own_queue": own_queue,
    }
    Path(REPORT + ".part").write_text(json.dumps(report))
    Path(REPORT + ".part").rename(REPORT)  # whole or not at all for the reader
    await asyncio.Event().wait()  # until the run is stopped from outside
"""

QUIET_TEST = """
def test_nothing(postgres_url, amqp_url):
    pass
"""


def run_pytest(tmp_path: Path, name: str, source: str) -> subprocess.Popen[bytes]:
    test_file = tmp_path / f"test_{name}.py"
    test_file.write_text(source)
    log = (tmp_path / f"{name}.log").open("wb")
    args = ["-p", "tests.conftest", "-c", str(REPO / "pyproject.toml"), "--rootdir", str(tmp_path)]
    proc = subprocess.Popen(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *args, str(test_file)],
        cwd=REPO,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # our signal goes to pytest only, as a `kill` would
    )
    log.close()
    return proc


@contextlib.contextmanager
def inner_run(
    tmp_path: Path, source: str, postgres_url: str, amqp_url: str
) -> Iterator[subprocess.Popen[bytes]]:
    """A pytest run of its own; whatever happens here, it and its leftovers are gone after."""
    proc = run_pytest(tmp_path, "inner", source)
    try:
        yield proc
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        remove_leftovers_of(proc.pid, postgres_url, amqp_url)


def remove_leftovers_of(pid: int, postgres_url: str, amqp_url: str) -> None:
    def owned(run: int) -> bool:
        return run == pid

    run_leftovers.kill_processes(owned)
    run_leftovers.drop_databases(postgres_url, owned)
    asyncio.run(run_leftovers.delete_broker_names(amqp_url, owned))


def database_exists(postgres_url: str, name: str) -> bool:
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        row = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
    return row is not None


async def broker_names_left(amqp_url: str, exchange: str, own_queue: list[str]) -> list[str]:
    """The run's exchanges and queues that still exist (passive declares: each miss closes
    its channel, so one channel per name)."""
    left = []
    connection = await aio_pika.connect(amqp_url)
    try:
        for name in (exchange, f"{exchange}.dead"):
            channel = await connection.channel()
            with contextlib.suppress(aio_pika.exceptions.ChannelClosed):
                await channel.get_exchange(name, ensure=True)
                left.append(name)
        for queue in [*(f"{exchange}.{q}" for q in QUEUES), *own_queue]:
            for name in (queue, f"{queue}.dead"):
                channel = await connection.channel()
                with contextlib.suppress(aio_pika.exceptions.ChannelClosed):
                    await channel.get_queue(name, ensure=True)
                    left.append(name)
    finally:
        await connection.close()
    return left


def what_is_left(
    run: int, postgres_url: str, amqp_url: str, report: dict[str, str]
) -> dict[str, object]:
    return {
        "processes": run_leftovers.marked_processes(lambda owner: owner == run),
        "database": database_exists(postgres_url, report["database"]),
        "broker": asyncio.run(
            broker_names_left(amqp_url, report["exchange"], [report["own_queue"]])
        ),
    }


def started(
    tmp_path: Path, proc: subprocess.Popen[bytes], postgres_url: str, amqp_url: str
) -> dict[str, str]:
    """Waits until the inner run's deployment is up; answers its report and what exists."""
    report_path = tmp_path / "report.json"

    def up() -> bool:
        assert proc.poll() is None, (tmp_path / "inner.log").read_text()
        return report_path.exists()

    wait_for(up, 90, "the inner run's deployment")
    report: dict[str, str] = json.loads(report_path.read_text())
    made = what_is_left(proc.pid, postgres_url, amqp_url, report)
    # the run has made everything the checks below look for: they cannot pass vacuously
    assert len(made["processes"]) >= len(PARTS), made  # type: ignore[arg-type]
    assert made["database"], made
    assert f"{report['exchange']}.pipeline" in made["broker"], made  # type: ignore[operator]
    assert report["own_queue"] in made["broker"], made  # type: ignore[operator]
    return report


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_run_stopped_mid_test_removes_everything_it_made(
    tmp_path: Path, postgres_url: str, amqp_url: str, signum: int
) -> None:
    source = INNER_TEST.replace("REPORT", repr(str(tmp_path / "report.json")))
    with inner_run(tmp_path, source, postgres_url, amqp_url) as proc:
        report = started(tmp_path, proc, postgres_url, amqp_url)
        proc.send_signal(signum)
        proc.wait(budget(120))
        left = what_is_left(proc.pid, postgres_url, amqp_url, report)
        log = (tmp_path / "inner.log").read_text()
        assert left == {"processes": [], "database": False, "broker": []}, log


def test_the_next_run_removes_what_a_killed_run_left(
    tmp_path: Path, postgres_url: str, amqp_url: str
) -> None:
    source = INNER_TEST.replace("REPORT", repr(str(tmp_path / "report.json")))
    with inner_run(tmp_path, source, postgres_url, amqp_url) as proc:
        report = started(tmp_path, proc, postgres_url, amqp_url)
        proc.send_signal(signal.SIGKILL)
        proc.wait(budget(30))
        assert database_exists(postgres_url, report["database"])  # nothing could clean up
        following = run_pytest(tmp_path, "following", QUIET_TEST)
        try:
            assert following.wait(budget(120)) == 0, (tmp_path / "following.log").read_text()
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(following.pid, signal.SIGKILL)
            following.wait()
        left = what_is_left(proc.pid, postgres_url, amqp_url, report)
        assert left == {"processes": [], "database": False, "broker": []}


def marked_sleeper(run: int) -> subprocess.Popen[bytes]:
    """A process marked as started by ``run`` (it sleeps: it is the target, not a wait)."""
    env = {**os.environ, run_leftovers.RUN_MARK: str(run)}
    return subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"], env=env)


def test_the_sweep_kills_processes_of_dead_runs_only() -> None:
    """What a dead run's processes meet when their death signal did not reach them (started
    off the main thread, not Linux): the next run's start kills them, and nothing of a run
    that is still alive."""
    ended = subprocess.Popen([sys.executable, "-c", "pass"])
    ended.wait()
    alive = marked_sleeper(0)  # stands for a run that is still going
    orphan = marked_sleeper(ended.pid)
    spared = marked_sleeper(alive.pid)
    try:
        wait_for(
            lambda: {orphan.pid, spared.pid} <= set(run_leftovers.marked_processes(bool)),
            10,
            "the marked processes",
        )
        run_leftovers.kill_processes(run_leftovers.dead_run)
        assert orphan.wait(budget(10)) == -signal.SIGKILL
        assert spared.poll() is None
    finally:
        for proc in (alive, orphan, spared):
            proc.kill()
            proc.wait()
