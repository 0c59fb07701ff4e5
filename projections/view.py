"""What a view is: tables it owns, and a pure function per event that changes its rows.

A view never touches a database. It receives ``Rows`` (a port the projection runner
implements over SQL, batching many events into one transaction with the tracking position)
and reads or writes plain dict rows through it. Because views are pure functions of the
event sequence, dropping the tables and replaying from event 0 gives the same rows.

Every view writes times as ``iso_time`` text and declares its tables with ``columns``, so
the helpers all views share live here with the ports.

A view may also be ``Prefetching``: told a page of events before it applies them, it names
the rows the page will read, and the runner reads them in a few queries rather than one
query per row. That is only a speed-up; a row it did not name is read when asked for.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol, runtime_checkable

Row = dict[str, Any]

# One small function per event: (row before, event) -> the row's changed fields.
Change = Callable[[Row, Any], Row]

COLUMN_TYPES = ("text", "int", "json", "bool")


@dataclass(frozen=True)
class Column:
    name: str
    type: str  # "text" | "int" | "json" (stored as text) | "bool"


@dataclass(frozen=True)
class Table:
    name: str
    columns: tuple[Column, ...]
    key: tuple[str, ...]
    indexes: tuple[tuple[str, ...], ...] = ()


def columns(spec: str) -> tuple[Column, ...]:
    """Columns written ``"name name:type …"`` in table order, a bare name being text: a
    table's schema then reads at a glance instead of one constructor call per column."""
    found = []
    for word in spec.split():
        name, _, kind = word.partition(":")
        if (kind or "text") not in COLUMN_TYPES:
            raise ValueError(f"column {name} has the unknown type {kind!r}")
        found.append(Column(name, kind or "text"))
    return tuple(found)


# the names ``fields_of`` was given, split once: it runs for most events of every view
_FIELD_NAMES: dict[str, list[str]] = {}


def fields_of(event: Any, names: str) -> Row:
    """The event's fields named (space-separated), as a row's fields of the same names."""
    split = _FIELD_NAMES.get(names)
    if split is None:
        split = _FIELD_NAMES[names] = names.split()
    return {name: getattr(event, name) for name in split}


def event_time(event: Any) -> str:
    """An event's timestamp as UTC ISO text with microseconds: sortable as a string."""
    return iso_time(event.timestamp)


# The last two times turned into text, with their texts. Every view of an event asks for
# the same ones, one view after the other (an event's own time, and perhaps one time it
# carries, a lease's end say), so a replay folding each event into all views formats each
# once, not once per view (it was a fifth of replay's folding). The object is held, so an
# ``is`` match cannot be another object at a reused address.
_last_time: tuple[object, str] = (None, "")
_other_time: tuple[object, str] = (None, "")

# Aggregate ids turned into text, by the id object's address, with the object held (so a
# match is that very object). Replay's decoder gives every event of one aggregate the same
# id object, so each is formatted once per aggregate; forgotten all at once when full, so
# a runner following the log for months holds no more than this many.
_id_texts: dict[int, tuple[object, str]] = {}
_ID_TEXTS_KEPT = 10_000


def iso_time(moment: datetime) -> str:
    """The one text form of a time in views; a naive time is taken to be UTC."""
    global _last_time, _other_time
    last = _last_time
    if last[0] is moment:
        return last[1]
    other = _other_time
    if other[0] is moment:
        return other[1]
    zone = moment.tzinfo
    if zone is UTC:  # what the store gives back: no conversion to make
        text = moment.isoformat(timespec="microseconds")
    else:
        aware = moment if zone is not None else moment.replace(tzinfo=UTC)
        text = aware.astimezone(UTC).isoformat(timespec="microseconds")
    _other_time = last
    _last_time = (moment, text)
    return text


def aggregate_id(event: Any) -> str:
    """The event's aggregate id as text: the key of the rows of one task or service."""
    originator_id = event.originator_id
    known = _id_texts.get(id(originator_id))
    if known is not None and known[0] is originator_id:
        return known[1]
    if len(_id_texts) >= _ID_TEXTS_KEPT:
        _id_texts.clear()
    text = str(originator_id)
    _id_texts[id(originator_id)] = (originator_id, text)
    return text


class Rows(Protocol):
    """Row access inside one projection batch. Keys are tuples in the table's key order.

    A row ``get`` returns is for reading: a view never changes it (nor a list or dict in
    it), but puts a new dict, so replay can hand out the rows it holds without copying."""

    def get(self, table: str, key: tuple[Any, ...]) -> Row | None: ...

    def put(self, table: str, row: Row) -> None: ...

    def delete(self, table: str, key: tuple[Any, ...]) -> None: ...


@dataclass(frozen=True)
class Recorded:
    """A domain event with its position in the store's notification log."""

    position: int
    event: Any


class View(Protocol):
    name: str
    tables: tuple[Table, ...]
    # Raised when a release changes what the view makes of the same events (a new line, a
    # field told otherwise): the view store then rebuilds the view from event 0 at start.
    version: int
    # the event types ``apply`` may change rows for: replay gives a view no other event, and
    # decodes an event only when some view folds its type (the live runner gives it all)
    folds: frozenset[type[Any]]

    def apply(self, recorded: Recorded, rows: Rows) -> None:
        """Changes rows for one event; ignores events it does not care about."""


class RowLoader(Protocol):
    """Reads many rows of a view's tables at once, before a page is applied."""

    def load(self, table: str, keys: Iterable[tuple[Any, ...]]) -> list[Row]:
        """Reads the rows of these keys at once; returns those that exist. Keys that do not
        exist are remembered as absent, so reading them later costs no query either."""


@runtime_checkable
class Prefetching(Protocol):
    """A view that can say, before a page is applied, which rows the page will read."""

    def prefetch(self, page: Sequence[Recorded], rows: RowLoader) -> None:
        """Loads what applying ``page`` in order will read; rows the page itself writes first
        need not be loaded, and missing some only costs their one-row reads."""
