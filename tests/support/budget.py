"""How long a test may wait for something, on this machine now.

Every budget a test states is what a quiet machine needs with room to spare; ``budget``
multiplies it by ``HOSTWRIGHT_TEST_TIME_SCALE`` when set (a slow CI runner: ``3``), and
otherwise by how overloaded the machine is right now (the one-minute load per core, at least
1), so a test fails because a condition never came, not because two other suites shared the
cores. Budgets bound waits on conditions; nothing sleeps them out.
"""

from __future__ import annotations

import os

SCALE_ENV = "HOSTWRIGHT_TEST_TIME_SCALE"


def time_scale() -> float:
    configured = os.environ.get(SCALE_ENV)
    if configured is not None:
        try:
            scale = float(configured)
        except ValueError:
            scale = 0.0
        if not scale > 0:
            raise ValueError(f"{SCALE_ENV} must be a number above 0, not {configured!r}")
        return scale
    try:
        load = os.getloadavg()[0] / (os.cpu_count() or 1)
    except OSError:
        load = 1.0
    return max(1.0, load)


def budget(seconds: float) -> float:
    """``seconds`` on a quiet machine, scaled to this one."""
    return seconds * time_scale()
