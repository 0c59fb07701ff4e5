"""The notification log read as plain rows, for reading all of it quickly (replay).

``log_rows`` consumes an event store and a page (after an id, at most ``limit``); it emits
each stored event as a ``StoredRow`` — ``(id, originator id, originator version, topic,
state)`` — straight from the recorder's own table and connection, without the
library's ``Notification`` per row or its UUID parse of every id: the same log, at about a
third of the cost (SQLite's rows ask for no conversion at all; PostgreSQL hands the id over
as text). ``EventDecoder.decode_row`` turns a row into its domain event, parsing each
distinct id once. A store of another kind is read through its ``notifications``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from eventsourcing.postgres import PostgresApplicationRecorder
from eventsourcing.sqlite import SQLiteApplicationRecorder
from psycopg.rows import tuple_row
from psycopg.sql import SQL, Identifier

from ops.store.event_store import EventStore

# (id, originator id, originator version, topic, state); the id as the store holds it
# (SQLite: text, PostgreSQL: cast to text, others: their ``Notification``'s)
StoredRow = tuple[int, Any, int, str, bytes]


def log_rows(store: EventStore, after: int, limit: int) -> Sequence[StoredRow]:
    """The stored events with ids greater than ``after``, at most ``limit``, in id order."""
    recorder = store.recorder
    if type(recorder) is SQLiteApplicationRecorder:
        statement = (
            "SELECT rowid, originator_id, originator_version, topic, state "  # noqa: S608
            f"FROM {recorder.events_table_name} WHERE rowid > ? ORDER BY rowid LIMIT ?"
        )
        with recorder.datastore.transaction(commit=False) as cursor:
            cursor.sqlite_cursor.row_factory = None  # tuples, not sqlite3.Row
            cursor.execute(statement, (after, limit))
            return cursor.fetchall()  # type: ignore[no-any-return]
    if type(recorder) is PostgresApplicationRecorder:
        query = SQL(
            "SELECT notification_id, originator_id::text, originator_version, topic, state "
            "FROM {schema}.{table} WHERE notification_id > %s ORDER BY notification_id LIMIT %s"
        ).format(
            schema=Identifier(recorder.datastore.schema),
            table=Identifier(recorder.events_table_name),
        )
        with (
            recorder.datastore.get_connection() as connection,
            connection.cursor(row_factory=tuple_row) as cursor,
        ):
            # binary results: the stored state comes as its bytes, not as hex text the
            # server writes and the client parses back
            cursor.execute(query, (after, limit), prepare=True, binary=True)
            return cursor.fetchall()
    return [
        (n.id, n.originator_id, n.originator_version, n.topic, n.state)
        for n in store.notifications(after, limit)
    ]
