"""How a live view table differs from its rebuild, compared whole.

``table_difference`` consumes a table's SQL mapping, the live rows as the column values SQL
holds and the rebuilt rows encoded the same way, keyed by their key; it emits how many rows
differ, the key of the first of them in key order and one line naming it (None, None when
the tables are equal).
Equal tables — the audit's usual answer — cost one dict comparison; only rows whose values
differ are decoded, so two encodings of one value (PostgreSQL's booleans, say) are not a
difference.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from ops.views.table_sql import TableSql

Values = tuple[Any, ...]


def table_difference(
    spec: TableSql, live: list[Values], rebuilt: dict[tuple[Any, ...], Values]
) -> tuple[int, Any, str | None]:
    """How many rows differ, and the first one in key order: its key, and described."""
    key_at = [spec.names.index(name) for name in spec.table.key]
    live_by_key = {tuple([values[i] for i in key_at]): values for values in live}
    if live_by_key == rebuilt:
        return 0, None, None
    differing = [
        key
        for key in live_by_key.keys() | rebuilt.keys()
        if _differs(spec, live_by_key.get(key), rebuilt.get(key))
    ]
    if not differing:
        return 0, None, None
    first = first_in_key_order(differing)
    described = _describe(spec, first, live_by_key.get(first), rebuilt.get(first))
    return len(differing), first, described


def first_in_key_order(keys: Iterable[Any]) -> Any:
    """The least key; keys of mixed types, which do not compare, by their ``repr``."""
    keys = list(keys)
    try:
        return min(keys)
    except TypeError:  # keys of mixed types: any stable order will do
        return min(keys, key=repr)


def _differs(spec: TableSql, live: Values | None, rebuilt: Values | None) -> bool:
    if live == rebuilt:
        return False
    if live is None or rebuilt is None:
        return True
    return spec.decode(live) != spec.decode(rebuilt)


def _describe(
    spec: TableSql, key: tuple[Any, ...], live: Values | None, rebuilt: Values | None
) -> str:
    table = spec.table.name
    shown = key[0] if len(key) == 1 else key
    if rebuilt is None:
        return f"table {table}: row {shown!r} is live but not in the replay"
    if live is None:
        return f"table {table}: row {shown!r} is missing from the live view"
    mine, theirs = spec.decode(live), spec.decode(rebuilt)
    column = next(name for name in spec.names if mine[name] != theirs[name])
    return (
        f"table {table}: row {shown!r} column {column}: "
        f"live {mine[column]!r} != replayed {theirs[column]!r}"
    )
