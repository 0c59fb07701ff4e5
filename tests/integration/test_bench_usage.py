"""``hostwright bench usage`` at a small size: its figures come out, one sync is one
listing per node plus the vanity mailbox listing, whatever the services on them, and the
sync is timed only once the relay has caught up with the seeded history."""

from __future__ import annotations

from typing import Any

import pytest

from ops.devtools.bench import usage as bench_usage
from ops.devtools.bench.usage import run_usage_bench_async


async def test_the_usage_bench_lists_each_node_once_per_sync(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls: list[str] = []
    relayed_all, one_sync = bench_usage._relayed_all, bench_usage._one_sync

    async def relayed(*args: Any) -> bool:
        done = await relayed_all(*args)
        calls.append(f"relayed {done}")
        return done

    async def sync(*args: Any) -> dict[str, Any]:
        calls.append("sync")
        return await one_sync(*args)

    monkeypatch.setattr(bench_usage, "_relayed_all", relayed)
    monkeypatch.setattr(bench_usage, "_one_sync", sync)
    figures = await run_usage_bench_async(services=90, servers=3, requests=3)
    # the sync is timed once the relay has published the seeded history, not behind it
    assert "relayed True" in calls and calls.index("relayed True") < calls.index("sync")
    assert figures["SSH calls per sync"] == 3 + 1
    assert figures["GET /v1/billing/usage tenants"] == 90
    assert figures["ssh floor (commands/s)"] > 0
    assert (
        figures["one full sync (s)"] > 0 and figures["view update after the last listing (s)"] >= 0
    )
