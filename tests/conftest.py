"""Shared fixtures: real PostgreSQL and RabbitMQ.

Tests take ``HOSTWRIGHT_TEST_POSTGRES_URL`` / ``HOSTWRIGHT_TEST_AMQP_URL``; unset, they use the
local services (127.0.0.1) when those answer, and testcontainers when they do not and Docker
does. No service and no Docker is a test *error*, never a skip: the suite must not go green
without the real parts.
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import psycopg
import pytest

LOCAL_POSTGRES = "postgresql://postgres@127.0.0.1:5432/postgres"
LOCAL_AMQP = "amqp://guest:guest@127.0.0.1:5672/"


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
        yield configured
        return
    if _answers(LOCAL_POSTGRES) or not _docker_answers():
        yield LOCAL_POSTGRES
        return
    from testcontainers.postgres import PostgresContainer

    with PostgresContainer("postgres:15", driver=None) as container:
        yield container.get_connection_url()


@pytest.fixture(scope="session")
def amqp_url() -> Iterator[str]:
    configured = os.environ.get("HOSTWRIGHT_TEST_AMQP_URL")
    if configured:
        yield configured
        return
    if _answers(LOCAL_AMQP) or not _docker_answers():
        yield LOCAL_AMQP
        return
    from testcontainers.rabbitmq import RabbitMqContainer

    with RabbitMqContainer("rabbitmq:3.12") as container:
        params = container.get_connection_params()
        yield f"amqp://guest:guest@{params.host}:{params.port}/"


@pytest.fixture
def fresh_postgres_url(postgres_url: str) -> Iterator[str]:
    """A new, empty PostgreSQL database for one test, dropped afterwards."""
    name = f"hw_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    parts = urlsplit(postgres_url)
    url = parts._replace(path=f"/{name}").geturl()
    yield url
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
    return f"hw-test-{uuid.uuid4().hex[:10]}"
