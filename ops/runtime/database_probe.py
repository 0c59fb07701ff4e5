"""``existing_database_problem(url, timeout_s)``: is the database a command would audit there?

Opening an EventStore creates what is missing: a SQLite file where none was (a typo in the
path, or no configuration at all, then reads as an empty and therefore consistent store), and
a PostgreSQL pool that retries an unreachable server in silence for minutes. A command that
reads what is recorded (``hostwright replay``) asks here first and gets one line instead:
the file that does not exist, or the server that did not answer within ``timeout_s``.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

import psycopg

SQLITE_PREFIX = "sqlite:///"
CONNECT_TIMEOUT_S = 10


def existing_database_problem(url: str, timeout_s: float = CONNECT_TIMEOUT_S) -> str | None:
    """None when the database exists and answers; else what is wrong, without its password."""
    if url.startswith(SQLITE_PREFIX):
        path = Path(url.removeprefix(SQLITE_PREFIX))
        if not path.is_file():
            return (
                f"no database at {path} (HOSTWRIGHT_DATABASE_URL): "
                "point it at the database `hostwright up` writes"
            )
        return None
    try:
        psycopg.connect(url, connect_timeout=max(1, round(timeout_s))).close()
    except psycopg.ProgrammingError:
        # a URL psycopg cannot parse: its message repeats the URL, password and all
        return "HOSTWRIGHT_DATABASE_URL is not a PostgreSQL URL psycopg can read"
    except psycopg.Error as exc:
        reason = " ".join(str(exc).split()) or type(exc).__name__
        return (
            f"the database at {_where(url)} did not answer "
            f"(waited at most {timeout_s:.0f} s): {reason}"
        )
    return None


def _where(url: str) -> str:
    """host:port/database: enough to find it, with no user or password."""
    try:
        parts = urlsplit(url)
        port = f":{parts.port}" if parts.port else ""
    except ValueError:  # an unreadable host or port: say nothing of the URL
        return "the configured database"
    return f"{parts.hostname or 'localhost'}{port}{parts.path}"
