"""``hostwright bench usage`` at a small size: its figures come out, and one sync is one
listing per node plus the vanity mailbox listing, whatever the services on them."""

from __future__ import annotations

from ops.devtools.bench.usage import run_usage_bench_async


async def test_the_usage_bench_lists_each_node_once_per_sync() -> None:
    figures = await run_usage_bench_async(services=90, servers=3, requests=3)
    assert figures["SSH calls per sync"] == 3 + 1
    assert figures["GET /v1/billing/usage tenants"] == 90
    assert figures["ssh floor (commands/s)"] > 0
    assert (
        figures["one full sync (s)"] > 0 and figures["view update after the last listing (s)"] >= 0
    )
