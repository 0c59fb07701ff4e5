"""``hostwright bench deploy``'s SSH floor and share: the floor is the median of several rounds
over real SSH (a simulated node), printed beside their range, and each burst's rate is printed
as a share of the bound that floor sets for the run's node commands per service."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from ops.devtools.bench.deploy.driver import Run
from ops.devtools.bench.deploy.floors import Floor
from ops.devtools.bench.deploy.report import report
from ops.devtools.bench.deploy.timing import Phase
from ops.devtools.bench.ssh_floor import ssh_command_rates
from ops.devtools.http_load import LoadResult


async def test_the_ssh_floor_is_measured_in_rounds_over_real_ssh(tmp_path: Path) -> None:
    rates = await ssh_command_rates(tmp_path, commands=16, concurrency=4, rounds=3)
    assert len(rates) == 3 and all(rate > 0 for rate in rates)


def _phase(name: str, services: int, span_s: float) -> Phase:
    return Phase(
        name,
        services,
        active=services,
        failed=0,
        span_s=span_s,
        first_step_ms=[10.0, 20.0],
        active_ms=[100.0, 200.0],
        orders=LoadResult(sent=services, ok=services, latencies_ms=[1.0], elapsed_s=1.0),
        planning_ms=[5.0],
    )


def test_the_report_prints_the_floors_spread_and_each_bursts_share_of_the_ssh_bound(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # 2,000 commands/s on 2 cores is 240,000 a minute; at 60 commands a service, 4,000
    # services a minute: a burst of 200 active in 15 s (800/min) is 20 % of that bound
    floor = Floor([0.5, 0.9], 3000.0, 800.0, ssh_rounds_per_s=[2600.0, 2000.0, 1200.0])
    run = Run(
        latency_ms=0,
        burst=_phase("burst", 200, 15.0),
        paced=_phase("paced", 40, 20.0),
        cpu_s={"pipeline": 4.0},
        wall_s=15.0,
        commits=4000,
        events=8000,
        node_commands=Counter({"v-list-user": 200 * 60}),
    )
    report(floor, [run], 16)
    printed = capsys.readouterr().out
    assert "2000/s, the median of 3 rounds (lowest 1200/s, highest 2600/s)" in printed
    assert "SSH alone bounds this machine at ≈4000 services/min" in printed
    assert "800 Split services active/min in the burst" in printed
    assert "20.0% of the SSH bound" in printed
