"""``hostwright replay`` of the usage view, on SQLite and PostgreSQL, when a username and a
vanity label come back after termination: a service's account and mailbox rows go with its own
``Terminated``, so the next service to hold the name is the only one its listings count, and
the view folded whole and folded per shard (the two services in different shards) are equal
to the live one."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from domain.commands import OrderService
from domain.hosting_plan import HostingPlan
from domain.server_usage import ServerUsage
from domain.service import Service
from ops.store.database import Database
from ops.store.event_store import EventStore
from ops.views.projection_runner import ProjectionRunner
from ops.views.replay import replay_and_compare
from ops.views.replay_shards import Shard
from ops.views.usage_queries import SqlUsageQueries
from ops.views.view_store import ViewStore
from projections.catalogue import all_views

T0 = datetime(2026, 12, 3, 10, 0, tzinfo=UTC)
VANITY = {"web_server": "web1", "mail_server": "mail1", "dns_servers": ["dns1"]}
UNIFIED = {"web_server": "uni1", "mail_server": "uni1", "dns_servers": ["uni1"]}


def _apart() -> tuple[str, str, str, str]:
    """Two service ids of the first shard of two, then two of the second."""
    ids = [str(n) for n in range(3001, 3100)]
    first = [i for i in ids if Shard(0, 2).owns(i)][:2]
    second = [i for i in ids if Shard(1, 2).owns(i)][:2]
    return first[0], first[1], second[0], second[1]


class History:
    def __init__(self, store: EventStore) -> None:
        self.store = store
        self.nodes = {name: ServerUsage.open(name, T0) for name in ("web1", "mail1", "uni1")}
        self.now = T0

    def order(self, service_id: str, mode: str, **names: Any) -> Service:
        plan = HostingPlan.parse({"package": "basic", "disk_mb": 1000})
        domain = "bob.hosted.example" if mode == "vanity" else "shop.example"
        command = OrderService(
            service_id=service_id,
            client_id="7",
            mode=mode,
            domain=domain,
            plan=plan,
            now=self.now,
            actor="whmcs",
            command_id=None,
            **names,
        )
        service = Service.order(command, None)
        service.place(self.now, VANITY if mode == "vanity" else UNIFIED)
        self.store.save(service)
        return service

    def terminate(self, *services: Service) -> None:
        for service in services:
            service.mark_terminated(self.now, [])
            self.store.save(service)

    def list_all(self, disk: int) -> None:
        self.now += timedelta(hours=1)
        users = {
            "web1": {"bobweb": {"disk_mb": disk, "bandwidth_mb": disk}},
            "mail1": {"provmail": {"disk_mb": 9999}},
            "uni1": {"shop": {"disk_mb": disk * 2, "bandwidth_mb": disk}},
        }
        for name, usage in self.nodes.items():
            usage.request_sync(self.now, "tick", fresh_s=0, lease_s=300)
            assert usage.sync is not None
            sync_id = usage.sync["id"]
            usage.start(self.now, sync_id)
            mailboxes = None
            if name == "mail1":
                mailboxes = {("provmail", "hosted.example"): {"bob": {"disk_mb": disk + 1}}}
            listings = usage.listed(self.now, sync_id, users[name], mailboxes)
            self.store.save(usage, *listings)


@pytest.fixture
def replayed(database_url: str) -> Iterator[tuple[EventStore, Database]]:
    store, db = EventStore(database_url), Database(database_url)
    try:
        yield store, db
    finally:
        db.close()
        store.close()


def test_a_name_reused_after_termination_replays_alike_whole_and_sharded(
    replayed: tuple[EventStore, Database],
) -> None:
    store, db = replayed
    history = History(store)
    old_vanity, new_unified, old_unified, new_vanity = _apart()  # each name in both shards
    terminated = [
        history.order(old_vanity, "vanity", label="bob", username="bobweb"),
        history.order(old_unified, "unified", username="shop"),
    ]
    history.list_all(10)
    history.terminate(*terminated)
    history.list_all(20)  # nobody's now: counted for no one
    history.order(new_vanity, "vanity", label="bob", username="bobweb")
    history.order(new_unified, "unified", username="shop")
    history.list_all(30)
    views = all_views()
    ProjectionRunner(store, ViewStore(db, views), views).catch_up()

    queries = SqlUsageQueries(db)
    disks = {}
    for service_id in (old_vanity, old_unified, new_vanity, new_unified):
        row = queries.service_usage(service_id)
        assert row is not None
        disks[service_id] = row["disk_mb"]
    # the terminated keep their last figures; the new holders count only their own listing
    assert disks == {old_vanity: 10 + 11, old_unified: 20, new_vanity: 30 + 31, new_unified: 60}
    assert replay_and_compare(store, db, views) is None
    assert replay_and_compare(store, db, views, workers=2) is None
    assert replay_and_compare(store, db, views, workers=3) is None
