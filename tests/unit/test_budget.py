"""budget: a test's waits scale with HOSTWRIGHT_TEST_TIME_SCALE, or with the machine's load."""

from __future__ import annotations

import os

import pytest

from tests.support.budget import SCALE_ENV, budget


def test_a_configured_scale_multiplies_every_budget(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(SCALE_ENV, "2.5")
    assert budget(4) == 10


@pytest.mark.parametrize("value", ["0", "-1", "fast", "", "nan"])
def test_a_scale_that_is_no_positive_number_is_refused_by_name(
    monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    monkeypatch.setenv(SCALE_ENV, value)
    with pytest.raises(ValueError, match=SCALE_ENV):
        budget(1)


def test_unset_it_follows_the_load_per_core_and_never_shrinks_a_budget(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv(SCALE_ENV, raising=False)
    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    monkeypatch.setattr(os, "getloadavg", lambda: (6.0, 0.0, 0.0))
    assert budget(10) == 30
    monkeypatch.setattr(os, "getloadavg", lambda: (0.5, 0.0, 0.0))
    assert budget(10) == 10
