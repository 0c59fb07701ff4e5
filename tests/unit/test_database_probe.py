"""The audit commands' check that a database exists never shows the URL's password, even for a
URL psycopg or urllib cannot read."""

from __future__ import annotations

import pytest

from ops.runtime.database_probe import existing_database_problem


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://hw:s3cretpw@[db.internal/hostwright",  # an unclosed IPv6 bracket
        "postgresql://hw:s3cretpw@db.internal:notaport/hostwright",
        "postgresql://hw:s3cretpw@db.internal/hostwright?sslmode=nonsense",
    ],
)
def test_an_unreadable_url_is_a_problem_that_shows_no_password(url: str) -> None:
    problem = existing_database_problem(url, timeout_s=1)
    assert problem is not None
    assert "s3cretpw" not in problem
