"""The pytest-xdist groups of the suite (``make test`` runs ``-n 2 --dist loadgroup``).

``POSTGRES_DEPLOYMENTS``: the end-to-end tests on PostgreSQL start whole deployments (about 43
connections each at their peak); one worker runs them one after another, so two never pass
PostgreSQL's default 100 connections together, while the other worker takes the rest of the
suite. ``tests/conftest.py`` puts every end-to-end test on PostgreSQL in it.
"""

from __future__ import annotations

import pytest

POSTGRES_DEPLOYMENTS = pytest.mark.xdist_group("postgres-deployments")
