"""A view table's row encoding: what replay compares must be what the store holds."""

from __future__ import annotations

import json

import pytest

from ops.views.table_sql import TableSql
from projections.view import Table, columns

TABLE = Table(name="things", columns=columns("id n:int doc:json on:bool"), key=("id",))
ROWS = [
    {"id": "a", "n": 1, "doc": {"b": [1, "x"], "a": None}, "on": True},
    {"id": "b", "n": None, "doc": None, "on": None},
    {"id": "c", "n": 2, "doc": ["été", 2**70], "on": False},  # non-ASCII, beyond 64 bits
    {"id": "d", "doc": []},  # columns a view did not set are NULL
]


@pytest.mark.parametrize("dialect", ["sqlite", "postgresql"])
def test_rows_encoded_many_at_once_decode_to_what_one_at_a_time_does(dialect: str) -> None:
    spec = TableSql(TABLE, "hw_things", dialect)
    many = list(spec.encode_many(ROWS))
    one_by_one = [tuple(spec.encode(row)) for row in ROWS]
    assert [spec.decode(values) for values in many] == [
        spec.decode(values) for values in one_by_one
    ]
    # ASCII values, the usual ones, are the very same text: equal tables compare equal whole
    assert many[0] == one_by_one[0] and many[1] == one_by_one[1]
    assert json.loads(many[2][2]) == ["été", 2**70]
