"""The ServerUsage sync's state machine at its edges: only the sync running records its end;
a sync lost with its process is due again; staff refreshes never wait for a back-off; a staff
refresh asked after the node's answer was taken lists the node once more (however many), one
asked before it, a "Sync now" or a tick lists nothing more."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from domain.server_usage import ServerUsage, UsageCadence, asked, staff_refresh

T0 = datetime(2026, 12, 3, 10, 0, tzinfo=UTC)
CADENCE = UsageCadence(period_s=3600, fresh_s=60, retry_s=30, lease_s=300)
STAFF = "refresh:staff"


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def names(usage: ServerUsage) -> list[str]:
    return [type(e).__name__ for e in usage.collect_events()]


def running(sync_id: int = 1) -> ServerUsage:
    """A node whose sync ``sync_id`` runs since ``at(1)`` (the events so far collected)."""
    usage, _ = asked(None, "web1", T0, "tick", CADENCE, tick=True)
    for number in range(1, sync_id):
        assert usage.start(at(1), number)
        usage.listed(at(1), number, {})
        usage.request_sync(at(1), "tick", fresh_s=0, lease_s=300)
    assert usage.start(at(1), sync_id)
    usage.collect_events()
    return usage


def test_a_sync_no_longer_running_records_neither_its_listing_nor_its_failure() -> None:
    usage = running()
    # its lease ran out and the tick queued sync 2: sync 1 ending late records nothing
    assert asked(usage, "web1", at(302), "tick", CADENCE, tick=True)[1] == "queued"
    usage.collect_events()
    assert usage.listed(at(303), 1, {"alice": {"disk_mb": 5}}) == []
    assert not usage.fail(at(303), 1, "late", retry_s=(30, 3600))
    assert names(usage) == []
    assert usage.sync is not None and (usage.sync["id"], usage.sync["state"]) == (2, "queued")
    assert usage.collected_at is None and usage.failures == 0
    # nor does a sync that is queued but not started, or one that ended already
    assert usage.listed(at(304), 2, {}) == [] and names(usage) == []
    assert usage.start(at(305), 2)
    assert usage.listed(at(306), 2, {"alice": {"disk_mb": 6}})
    assert usage.listed(at(307), 2, {}) == [] and not usage.fail(at(307), 2, "x", retry_s=(1, 1))
    assert names(usage) == ["SyncStarted", "SyncListed"]


def test_a_sync_lost_with_its_process_is_due_again_once_its_lease_ran_out() -> None:
    usage = running()
    assert not usage.due(at(300), 3600, 300)
    assert usage.due(at(301), 3600, 300)
    assert asked(usage, "web1", at(301), "tick", CADENCE, tick=True)[1] == "queued"
    # a queued sync whose message was lost: due again too
    assert usage.due(at(301 + 300), 3600, 300)
    assert asked(usage, "web1", at(601), "tick", CADENCE, tick=True)[1] == "queued"
    assert names(usage) == ["SyncQueued", "SyncQueued"]


def test_a_staff_refresh_does_not_wait_for_the_back_off_ticks_and_sync_now_do() -> None:
    usage = running()
    assert usage.fail(at(2), 1, "web1: connection refused", retry_s=(30, 3600))
    assert asked(usage, "web1", at(3), "sync-now", CADENCE)[1] == "joined"
    assert asked(usage, "web1", at(3), "tick", CADENCE, tick=True)[1] == "not_due"
    assert asked(usage, "web1", at(4), STAFF, CADENCE)[1] == "queued"
    assert asked(usage, "web1", at(5), STAFF, CADENCE)[1] == "joined"  # the one it queued
    assert staff_refresh("refresh") and staff_refresh(STAFF) and not staff_refresh("sync-now")


def test_staff_refreshes_asked_after_the_answer_was_taken_list_once_more() -> None:
    usage = running()
    outcomes = [asked(usage, "web1", at(10 + i), STAFF, CADENCE)[1] for i in range(4)]
    assert outcomes == ["joined"] * 4
    assert [type(e).__name__ for e in usage.pending_events] == ["RelistAsked"] * 4
    # the node answered at 11: the asks at 12 and 13 may not be in its answer
    usage.listed(at(20), 1, {"alice": {"disk_mb": 5}}, taken_at=at(11))
    events = usage.collect_events()
    assert [type(e).__name__ for e in events][-2:] == ["SyncListed", "SyncQueued"]
    queued = events[-1]
    assert isinstance(queued, ServerUsage.SyncQueued) and (queued.sync_id, queued.by) == (2, STAFF)
    assert usage.relist_at is None
    # the one more sync ends without a second one
    assert usage.start(at(21), 2)
    usage.listed(at(22), 2, {}, taken_at=at(22))
    assert names(usage)[-1] == "SyncListed" and usage.sync is None


def test_asks_before_the_answer_sync_now_and_ticks_list_nothing_more() -> None:
    """Refresh all, five "Sync now" and the tick: one listing."""
    usage, outcome = asked(None, "web1", T0, STAFF, CADENCE)
    assert outcome == "queued"
    assert asked(usage, "web1", at(1), STAFF, CADENCE)[1] == "joined"  # queued: no record
    assert usage.start(at(2), 1)
    assert asked(usage, "web1", at(3), STAFF, CADENCE)[1] == "joined"  # before the answer
    usage.collect_events()
    outcomes = [asked(usage, "web1", at(5 + i), "sync-now", CADENCE)[1] for i in range(5)]
    assert outcomes == ["joined"] * 5
    assert asked(usage, "web1", at(11), "tick", CADENCE, tick=True)[1] == "not_due"
    assert names(usage) == []
    usage.listed(at(12), 1, {}, taken_at=at(4))
    assert names(usage) == ["SyncListed"] and usage.sync is None


def test_a_failed_sync_drops_the_asks_it_had_joined() -> None:
    usage = running()
    asked(usage, "web1", at(10), STAFF, CADENCE)
    assert usage.fail(at(11), 1, "gone", retry_s=(30, 3600))
    assert names(usage)[-1] == "SyncFailed" and usage.relist_at is None and usage.sync is None
