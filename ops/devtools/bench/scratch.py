"""What a benchmark run borrows and gives back: a scratch PostgreSQL database, a scratch
RabbitMQ virtual host, a tmpfs folder when the machine has one, and a free TCP port.

Consumes server URLs; emits the scratch URLs and paths, removed when the run ends.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit

import psycopg

from ops.devtools.listen_ports import free_port as free_port

DEFAULT_POSTGRES = "postgresql://postgres@127.0.0.1:5432/postgres"


class scratch_postgres:
    """A fresh database on the server for the run, dropped afterwards."""

    def __init__(self, server_url: str) -> None:
        self.server_url = server_url
        self.name = f"hw_bench_{uuid.uuid4().hex[:10]}"

    def __enter__(self) -> str:
        with psycopg.connect(self.server_url, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{self.name}"')
        return urlsplit(self.server_url)._replace(path=f"/{self.name}").geturl()

    def __exit__(self, *exc: object) -> None:
        with psycopg.connect(self.server_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')


@contextmanager
def scratch_vhost(amqp_url: str) -> Iterator[str]:
    parts = urlsplit(amqp_url)
    ctl = shutil.which("rabbitmqctl")
    if ctl is None or parts.hostname not in ("127.0.0.1", "localhost", "::1"):
        print("(not a local broker: sharing its virtual host; run nothing else on it meanwhile)")
        yield amqp_url
        return
    name = f"hw-bench-{uuid.uuid4().hex[:8]}"
    user = parts.username or "guest"
    subprocess.run([ctl, "-q", "add_vhost", name], check=True, capture_output=True)
    try:
        subprocess.run(
            [ctl, "-q", "set_permissions", "-p", name, user, ".*", ".*", ".*"],
            check=True,
            capture_output=True,
        )
        yield parts._replace(path=f"/{name}").geturl()
    finally:
        subprocess.run([ctl, "-q", "delete_vhost", name], check=False, capture_output=True)


def scratch_root() -> str | None:
    """Where the run's files go: tmpfs when there is one. The simulated nodes rewrite a state
    file per changing command, and on this machine's ext4 a replace-by-rename costs ~3 ms of
    blocking I/O (auto_da_alloc) — a cost of the machines the nodes stand for, not of ours."""
    shm = Path("/dev/shm")  # noqa: S108 — a scratch directory, removed afterwards
    return str(shm) if shm.is_dir() and os.access(shm, os.W_OK) else None
