"""Group commit: concurrent orders share transactions, and a conflict hurts only its owner."""

from __future__ import annotations

import threading
from datetime import UTC, datetime
from pathlib import Path

from domain.commands import parse_order
from ops.store.event_store import EventStore

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


def order(i: int, domain: str | None = None):  # type: ignore[no-untyped-def]
    body = {
        "service_id": i,
        "client_id": 1,
        "mode": "split",
        "domain": domain or f"g{i}.example.com",
        "plan": {"package": "default"},
    }
    return parse_order(body, now=NOW, actor="test")


def test_concurrent_orders_are_recorded_in_fewer_rounds_and_each_caller_gets_its_outcome(
    database_url: str,
) -> None:
    store = EventStore(database_url)
    store.order_service(order(5), None)
    outcomes: dict[int, object] = {}
    barrier = threading.Barrier(40)

    def place(i: int) -> None:
        barrier.wait()
        try:
            # service 5 exists already with another domain: that caller alone gets a Conflict
            outcomes[i] = store.order_service(
                order(i, "other.example.com" if i == 5 else None), None
            )
        except Exception as exc:
            outcomes[i] = type(exc).__name__

    threads = [threading.Thread(target=place, args=(i,)) for i in range(1, 41)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert outcomes.pop(5) == "Conflict"
    assert set(outcomes.values()) == {True}
    # 1 before + 39 new, none lost in a failed round (PostgreSQL ids may have gaps: count);
    # each order is recorded with the claims on its domain and username
    ordered = [n for n in store.notifications(0, 1000) if n.topic.endswith("Service.Ordered")]
    assert len(ordered) == 40
    assert len(store.notifications(0, 1000)) == 3 * 40
    assert store._group.rounds < 40
    recorded = {store.decode(n).service_id for n in ordered}  # type: ignore[attr-defined]
    assert recorded == {str(i) for i in range(1, 41)}
    store.close()


def test_a_failed_combined_round_still_records_the_innocent_callers(tmp_path: Path) -> None:
    store = EventStore(f"sqlite:///{tmp_path / 's.sqlite'}")
    store.order_service(order(1), None)
    # Two callers in one round, one of them a duplicate of service 1.
    results: list[object] = []
    barrier = threading.Barrier(2)

    def place(i: int) -> None:
        barrier.wait()
        results.append(store.order_service(order(i), None))

    threads = [threading.Thread(target=place, args=(i,)) for i in (1, 2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(map(str, results)) == ["False", "True"]
    assert store.max_notification_id() == 2 * 3  # each order: Service.Ordered and 2 claims
    store.close()
