"""The ServerUsage aggregate decides joins, and the bandwidth rule never lowers a month's bill:
refreshes join a pending, fresh or retry-bound sync; a tick queues only a due node; a sync
is taken once; a failure keeps retrying with back-off; a counter reset adds the new value."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from domain.server_usage import ServerUsage, UsageCadence, asked, retry_delay
from domain.usage_figures import mailbox_figures, user_figures

T0 = datetime(2026, 12, 3, 10, 0, tzinfo=UTC)
CADENCE = UsageCadence(period_s=3600, fresh_s=60, retry_s=30, lease_s=300)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def names(usage: ServerUsage) -> list[str]:
    return [type(e).__name__ for e in usage.collect_events()]


def test_refreshes_join_one_queued_sync_then_a_fresh_listing() -> None:
    usage, outcome = asked(None, "web1", T0, "refresh", CADENCE)
    assert outcome == "queued"
    outcomes = [asked(usage, "web1", at(i), "sync-now", CADENCE)[1] for i in range(1, 6)]
    assert outcomes == ["joined"] * 5
    assert asked(usage, "web1", at(6), "tick", CADENCE, tick=True)[1] == "not_due"
    assert usage.start(at(7), 1) and not usage.start(at(8), 1)  # taken once
    assert asked(usage, "web1", at(9), "sync-now", CADENCE)[1] == "joined"
    listings = usage.listed(at(10), 1, {"alice": {"disk_mb": 5}})
    assert [type(e).__qualname__ for x in listings for e in x.collect_events()] == [
        "NodeUsers.Listed"
    ]
    assert asked(usage, "web1", at(20), "sync-now", CADENCE)[1] == "fresh"
    assert asked(usage, "web1", at(71), "sync-now", CADENCE)[1] == "queued"
    assert names(usage) == ["Opened", "SyncQueued", "SyncStarted", "SyncListed", "SyncQueued"]


def test_a_sync_whose_lease_ran_out_is_queued_again() -> None:
    usage, _ = asked(None, "web1", T0, "tick", CADENCE, tick=True)
    assert usage.start(at(1), 1)
    assert asked(usage, "web1", at(299), "refresh", CADENCE)[1] == "joined"
    assert asked(usage, "web1", at(302), "refresh", CADENCE)[1] == "queued"
    assert usage.sync is not None and usage.sync["id"] == 2


def test_a_failed_node_is_retried_with_back_off_and_refreshes_join_the_retry() -> None:
    usage, _ = asked(None, "web1", T0, "tick", CADENCE, tick=True)
    usage.start(at(1), 1)
    usage.fail(at(2), 1, "web1: connection refused", retry_s=(30, 3600))
    assert usage.retry_at == at(32)
    assert asked(usage, "web1", at(10), "sync-now", CADENCE)[1] == "joined"
    assert not usage.due(at(31), 3600, 300) and usage.due(at(32), 3600, 300)
    assert asked(usage, "web1", at(32), "tick", CADENCE, tick=True)[1] == "queued"
    usage.start(at(33), 2)
    usage.fail(at(34), 2, "again", retry_s=(30, 3600))
    assert usage.retry_at == at(34 + 60)
    assert [retry_delay(n, 30, 100) for n in (1, 2, 3, 4)] == [30, 60, 100, 100]


def test_the_tick_queues_a_node_a_period_after_its_last_listing() -> None:
    usage, _ = asked(None, "web1", T0, "tick", CADENCE, tick=True)
    usage.start(at(1), 1)
    usage.listed(at(2), 1, {})
    assert asked(usage, "web1", at(3601), "tick", CADENCE, tick=True)[1] == "not_due"
    assert asked(usage, "web1", at(3602), "tick", CADENCE, tick=True)[1] == "queued"


def test_hestia_listings_become_figures() -> None:
    listing = {
        "alice": {
            "U_DISK": "120",
            "U_BANDWIDTH": "33",
            "U_MAIL_ACCOUNTS": "2",
            "U_DATABASES": "1",
            "U_WEB_DOMAINS": "1",
            "DISK_QUOTA": "500",
            "U_DNS_DOMAINS": "",
        },
    }
    assert user_figures(listing) == {
        "alice": {
            "disk_mb": 120,
            "bandwidth_mb": 33,
            "web_domains": 1,
            "dns_domains": 0,
            "mail_domains": 0,
            "mail_accounts": 2,
            "databases": 1,
        }
    }
    assert mailbox_figures({"bob": {"U_DISK": "7", "QUOTA": "100"}}) == {"bob": {"disk_mb": 7}}
