"""What ``hostwright bench deploy`` prints: the floors, a table of each phase's rate and
latencies, then per latency setting what the burst cost and where a step's time went, and
whether the targets (first step p99 ≤ 100 ms paced; ≥ 1000 services/min at 0 ms) were met.

Consumes the Floor and each latency setting's Run; emits text on stdout.
"""

from __future__ import annotations

import statistics

from ops.devtools.bench.deploy.driver import Run
from ops.devtools.bench.deploy.floors import Floor
from ops.devtools.http_load import percentile


def report(floor: Floor, runs: list[Run], node_concurrency: int) -> None:
    print()
    _print_floor(floor, node_concurrency)
    print()
    _print_phases(runs)
    for run in runs:
        print()
        _print_burst(run, floor)
    print()
    _print_targets(runs, floor)


def _print_floor(floor: Floor, node_concurrency: int) -> None:
    rt = floor.round_trip_ms
    print(
        f"floor  broker publish→consume, one at a time: p50 {percentile(rt, 50):.2f} ms / "
        f"p99 {percentile(rt, 99):.2f} ms ({1000 / statistics.mean(rt):.0f} round trips/s); "
        f"confirms pipelined: {floor.msgs_per_s:.0f} msgs/s"
    )
    print(f"floor  PostgreSQL single-event saves: {floor.store_saves_per_s:.0f}/s")
    print(
        f"floor  Hestia commands over SSH (asyncssh client + simulated node, one process, "
        f"one core): {floor.ssh_commands_per_s:.0f}/s, the median of "
        f"{len(floor.ssh_rounds_per_s)} rounds (lowest {min(floor.ssh_rounds_per_s):.0f}/s, "
        f"highest {max(floor.ssh_rounds_per_s):.0f}/s)"
    )
    print(f"(4 nodes: web1, mail1, dns1, dns2; max_concurrency {node_concurrency} per node)")


def _print_phases(runs: list[Run]) -> None:
    print(
        "ms/cmd  phase  services  active/min  first step p50/p99 ms   active p50/p99 ms"
        "      failed  order HTTP p99 ms"
    )
    for run in runs:
        for phase in (run.burst, run.paced):
            first_step, active = phase.first_step_ms, phase.active_ms
            print(
                f"{run.latency_ms:>6}  {phase.name:<5}  {phase.active:>4}/{phase.services:<4}"
                f"{phase.per_minute:>10.0f}  "
                f"{percentile(first_step, 50):>9.0f} /{percentile(first_step, 99):>7.0f}"
                f"  {percentile(active, 50):>9.0f} /{percentile(active, 99):>7.0f}"
                f"  {phase.failed:>8}  {phase.orders.percentile(99):>10.1f}"
            )


def _print_burst(run: Run, floor: Floor) -> None:
    n = run.burst.services
    print(
        f"[{run.latency_ms} ms/command] burst of {n}: {run.wall_s:.1f} s wall; "
        f"{run.events / n:.1f} events and {run.commits / n:.1f} PostgreSQL commits "
        f"per service ({run.commits / run.wall_s:.0f} commits/s)"
    )
    print("  CPU seconds during the burst (2 cores = 2 s per s):")
    for label, seconds in sorted(run.cpu_s.items(), key=lambda kv: -kv[1]):
        if seconds >= 0.05:
            print(f"  {seconds:8.1f}  {seconds / run.wall_s:6.0%}  {label}")
    commands = run.node_commands
    top = ", ".join(f"{name} {count / n:.1f}" for name, count in commands.most_common(6))
    per_service = sum(commands.values()) / n
    ceiling = _ssh_bound(run, floor)
    print(
        f"  node commands per service: {per_service:.1f} "
        f"(over SSH, each a session on a pooled connection; most: {top})"
    )
    print(
        f"  SSH alone bounds this machine at ≈{ceiling:.0f} services/min "
        f"(SSH floor * 2 cores * 60 / commands per service; nothing else running)"
    )
    print("  a step's time in the burst, ms (p50 / p99 / mean, steps):")
    for label, values in sorted(run.step_ms.items()):
        print(
            f"    {percentile(values, 50):7.0f} / {percentile(values, 99):7.0f} / "
            f"{statistics.mean(values):7.0f}, {len(values):>5}  {label}"
        )
    for line in run.profile:
        print("  " + line)


def _ssh_bound(run: Run, floor: Floor) -> float:
    """The services per minute SSH alone allows this run's burst: its floor on both cores
    over the run's node commands per service."""
    per_service = sum(run.node_commands.values()) / run.burst.services
    return floor.ssh_commands_per_s * 2 * 60 / per_service if per_service else 0.0


def _print_targets(runs: list[Run], floor: Floor) -> None:
    for run in runs:
        planning = run.paced.planning_ms
        if planning:
            print(
                f"[{run.latency_ms} ms/command] paced first step: order → pipeline planning "
                f"p50 {percentile(planning, 50):.0f} / p99 {percentile(planning, 99):.0f} ms "
                f"(relay, broker, the pipeline's queue); the rest is planning and recording "
                f"the run"
            )
    for run in runs:
        p99 = percentile(run.paced.first_step_ms, 99)
        rate = run.burst.per_minute
        print(
            f"{run.latency_ms} ms/command: first step p99 {p99:.0f} ms paced (target ≤ 100: "
            f"{'met' if p99 <= 100 else 'MISSED'}); {rate:.0f} Split services active/min "
            f"in the burst (target ≥ 1000 at 0 ms: "
            f"{'met' if rate >= 1000 else 'MISSED' if run.latency_ms == 0 else 'n/a'}), "
            f"{_share(rate, _ssh_bound(run, floor))} of the SSH bound"
        )


def _share(rate: float, bound: float) -> str:
    return f"{rate / bound:.1%}" if bound else "n/a"
