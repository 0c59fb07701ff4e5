"""Shared fixtures: real PostgreSQL and RabbitMQ.

Tests take ``HOSTWRIGHT_TEST_POSTGRES_URL`` / ``HOSTWRIGHT_TEST_AMQP_URL``; unset, they use the
local services (127.0.0.1) when those answer, and testcontainers when they do not and Docker
does. No service and no Docker is a test *error*, never a skip: the suite must not go green
without the real parts.

A run removes what it made (processes, databases, exchanges and queues: tests/support/
run_leftovers.py) when it ends, also on a failure, Ctrl-C or SIGTERM, and what runs that died
without ending (SIGKILL) left behind when it starts.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
from collections.abc import Iterator
from pathlib import Path
from types import FrameType
from urllib.parse import urlsplit

import psycopg
import pytest

from tests.support import run_leftovers
from tests.support.processes import stop_all_started
from tests.support.worker_groups import POSTGRES_DEPLOYMENTS

LOCAL_POSTGRES = "postgresql://postgres@127.0.0.1:5432/postgres"
LOCAL_AMQP = "amqp://guest:guest@127.0.0.1:5672/"


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def pytest_configure(config: pytest.Config) -> None:
    """SIGTERM (a CI job cancelled, ``kill``) ends the run as Ctrl-C does, so every fixture's
    clean-up runs instead of the process just vanishing."""
    signal.signal(signal.SIGTERM, _interrupt)


def pytest_sessionstart(session: pytest.Session) -> None:
    run_leftovers.kill_processes(run_leftovers.dead_run)


E2E = Path(__file__).parent / "e2e"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Every end-to-end test on PostgreSQL in the deployments' xdist group
    (tests/support/worker_groups.py)."""
    for item in items:
        if E2E in item.path.parents and _on_postgres(item):
            item.add_marker(POSTGRES_DEPLOYMENTS)


def _on_postgres(item: pytest.Item) -> bool:
    fixtures = getattr(item, "fixturenames", ())
    if "postgres_url" in fixtures:
        return True
    callspec = getattr(item, "callspec", None)
    return callspec is not None and callspec.params.get("database_url") == "postgresql"


def pytest_unconfigure(config: pytest.Config) -> None:
    """The last resort (fixtures' clean-up has run by now): whatever this run started."""
    stop_all_started()
    run_leftovers.kill_processes(_this_run)


def _this_run(pid: int) -> bool:
    return pid == run_leftovers.this_run()


def _with_database_cleanup(url: str) -> Iterator[str]:
    run_leftovers.drop_databases(url, run_leftovers.dead_run)
    try:
        yield url
    finally:
        stop_all_started()
        run_leftovers.drop_databases(url, _this_run)


def _with_broker_cleanup(url: str) -> Iterator[str]:
    asyncio.run(run_leftovers.delete_broker_names(url, run_leftovers.dead_run))
    try:
        yield url
    finally:
        stop_all_started()  # a process left running would declare its queues again
        asyncio.run(run_leftovers.delete_broker_names(url, _this_run))


def _answers(url: str) -> bool:
    parts = urlsplit(url)
    try:
        with socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 0), 1):
            return True
    except OSError:
        return False


def _docker_answers() -> bool:
    try:
        import docker  # type: ignore[import-untyped]

        docker.from_env().ping()
        return True
    except Exception:
        return False


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A URL of a PostgreSQL server database this suite may create databases from."""
    configured = os.environ.get("HOSTWRIGHT_TEST_POSTGRES_URL")
    if configured:
        yield from _with_database_cleanup(configured)
        return
    if _answers(LOCAL_POSTGRES) or not _docker_answers():
        yield from _with_database_cleanup(LOCAL_POSTGRES)
        return
    from testcontainers.postgres import PostgresContainer

    with PostgresContainer("postgres:15", driver=None) as container:
        yield container.get_connection_url()


@pytest.fixture(scope="session")
def amqp_url() -> Iterator[str]:
    configured = os.environ.get("HOSTWRIGHT_TEST_AMQP_URL")
    if configured:
        yield from _with_broker_cleanup(configured)
        return
    if _answers(LOCAL_AMQP) or not _docker_answers():
        yield from _with_broker_cleanup(LOCAL_AMQP)
        return
    from testcontainers.rabbitmq import RabbitMqContainer

    with RabbitMqContainer("rabbitmq:3.12") as container:
        params = container.get_connection_params()
        yield f"amqp://guest:guest@{params.host}:{params.port}/"


@pytest.fixture
def fresh_postgres_url(postgres_url: str) -> Iterator[str]:
    """A new, empty PostgreSQL database for one test, dropped afterwards."""
    name = run_leftovers.database_name()
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    parts = urlsplit(postgres_url)
    url = parts._replace(path=f"/{name}").geturl()
    try:
        yield url
    finally:
        with psycopg.connect(postgres_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'store.sqlite'}"


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The same test on the embedded default and on PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'store.sqlite'}"
    url: str = request.getfixturevalue("fresh_postgres_url")
    return url


@pytest.fixture
def exchange_name() -> str:
    """A broker exchange of this test's own, so tests never see each other's messages."""
    return run_leftovers.exchange_name()
