"""``hostwright bench growth`` on a few deploys: it runs from the command line, and its
figures show what issue 12 bounds — one LeaseRenewed per step for 30 s of heartbeats (not
one per beat), nothing read by a rebuild once every run has finished, an inbox the retention
empties."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from ops.cli import main
from ops.devtools.bench.growth import measure

STEPS_PER_SPLIT_DEPLOY = 12


def test_the_figures_after_a_few_deploys(tmp_path: Path) -> None:
    figures = asyncio.run(measure(f"sqlite:///{tmp_path / 'growth.sqlite'}", 5, heartbeats=3))
    steps = 5 * STEPS_PER_SPLIT_DEPLOY
    assert figures["task events"] == steps * 4  # planned, dispatched, one renewal, succeeded
    assert figures["LeaseRenewed"] == steps
    assert figures["held runs"] == figures["held tasks"] == 0
    assert figures["rebuild events read"] == 0 and figures["rebuilt runs"] == 0
    assert figures["inbox rows"] > 0 and figures["inbox rows, pruned"] == 0


def test_the_command_line_runs_it(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", "growth", "--services", "2", "--heartbeats", "1"]) == 0
    shown = capsys.readouterr().out
    assert "rebuild_s" in shown and "LeaseRenewed" in shown
