"""What a burst cost beyond its wall time, counted before and after it: CPU seconds of each of
our processes and of PostgreSQL's and RabbitMQ's, the database's commits, and the commands the
simulated nodes ran.

Consumes /proc, pg_stat_database and the nodes' command logs; emits running totals.
"""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path
from urllib.parse import urlsplit

import psycopg

from ops.devtools.simnode import read_command_log


def cpu_seconds(pids: dict[str, int]) -> dict[str, float]:
    """utime + stime of each of our processes, and of PostgreSQL's and RabbitMQ's."""
    tick = os.sysconf("SC_CLK_TCK")
    found: dict[str, float] = {}

    def stat(pid: int) -> tuple[str, float] | None:
        try:
            raw = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            return None
        name = raw[raw.index("(") + 1 : raw.rindex(")")]
        parts = raw[raw.rindex(")") + 2 :].split()
        return name, (int(parts[11]) + int(parts[12])) / tick

    for label, pid in pids.items():
        if (got := stat(pid)) is not None:
            found[label] = got[1]
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (got := stat(int(entry.name))) is not None:
            name, seconds = got
            if name == "postgres":
                found["postgresql (all backends)"] = (
                    found.get("postgresql (all backends)", 0) + seconds
                )
            elif name == "beam.smp":
                found["rabbitmq"] = found.get("rabbitmq", 0) + seconds
    return found


def node_commands(nodes_dir: Path) -> Counter[str]:
    """Every command the simulated nodes have run so far, by command name."""
    counts: Counter[str] = Counter()
    for node_dir in nodes_dir.iterdir():
        if node_dir.is_dir():
            counts.update(entry["argv"][0] for entry in read_command_log(node_dir))
    return counts


def commits(database_url: str) -> int:
    """Transactions committed in the database so far; -1 when the server has no free slot."""
    name = urlsplit(database_url).path.lstrip("/")
    try:
        with psycopg.connect(database_url, autocommit=True) as conn:
            row = conn.execute(
                "SELECT xact_commit FROM pg_stat_database WHERE datname = %s", (name,)
            ).fetchone()
    except psycopg.OperationalError as exc:
        print(f"(could not count PostgreSQL commits: {exc})")
        return -1
    return int(row[0]) if row else 0
