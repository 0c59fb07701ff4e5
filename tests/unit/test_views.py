"""The services view and the operation log as pure functions of events, over an in-memory Rows."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from eventsourcing.domain import Aggregate

from domain.commands import parse_lifecycle, parse_order
from domain.service import Service
from projections.catalogue import all_views
from projections.oplog_view import ENTRIES, OperationLogView
from projections.services_view import ServicesView
from projections.view import Recorded, Row, Rows, View
from tests.fakes.rows import MemoryRows

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


def test_the_fake_satisfies_the_real_port() -> None:
    rows: Rows = MemoryRows(all_views())  # mypy checks the fake against the Rows protocol
    rows.put("services_aggregates", {"aggregate_id": "a", "service_id": "1"})
    assert rows.get("services_aggregates", ("a",)) == {"aggregate_id": "a", "service_id": "1"}
    rows.delete("services_aggregates", ("a",))
    assert rows.get("services_aggregates", ("a",)) is None


class History:
    """Runs commands on one Service and feeds each event to the views, like the runner does."""

    def __init__(self, views: list[View], only_folded: bool = False, **order: Any) -> None:
        self.views = views
        self.rows = MemoryRows(views)
        # as replay does: each view is given only the event types it declares it folds
        self.only_folded = only_folded
        self.position = 0
        body = {
            "service_id": 42,
            "client_id": 7,
            "mode": "split",
            "domain": "shop.example.com",
            "plan": {"package": "default"},
        }
        self.service = Service.order(
            parse_order(body | order, now=NOW, actor="whmcs"), "sealed-secret-text"
        )
        self._project()

    def ask(self, action: str, body: dict[str, Any] | None = None, minutes: int = 1) -> None:
        now = NOW + timedelta(minutes=minutes)
        self.service.handle(parse_lifecycle(action, "42", body, now=now, actor="whmcs"))
        self._project()

    def outcome(self, mark: str, minutes: int = 2, **extra: Any) -> None:
        getattr(self.service, mark)(NOW + timedelta(minutes=minutes), **extra)
        self._project()

    def _project(self) -> None:
        for event in self.service.collect_events():
            self.position += 1
            for view in self.views:
                if self.only_folded and type(event) not in view.folds:
                    continue
                view.apply(Recorded(position=self.position, event=event), self.rows)

    def table(self, name: str) -> list[Row]:
        rows = self.rows.tables[name]
        return [rows[key] for key in sorted(rows)]


def service_row(history: History) -> Row:
    found = history.rows.get("services", ("42",))
    assert found is not None
    return found


def test_an_order_makes_a_provisioning_row_stamped_with_the_events_time() -> None:
    history = History([ServicesView()], plan={"package": "gold", "disk_mb": 500})
    row = service_row(history)
    assert row["status"] == "provisioning"
    assert row["pending"] == "deploy"
    assert row["plan"]["package"] == "gold" and row["plan"]["disk_mb"] == 500
    assert (row["progress_done"], row["progress_total"], row["current_step"]) == (0, 0, None)
    assert row["ordered_at"] == row["updated_at"] == "2026-11-23T12:00:00.000000+00:00"
    assert row["last_position"] == 1
    assert (row["client_id"], row["mode"], row["domain"]) == ("7", "split", "shop.example.com")


def test_a_suspend_request_is_pending_until_suspended_then_unsuspend_goes_back_to_active() -> None:
    history = History([ServicesView()])
    history.outcome("mark_active", minutes=1)
    history.ask("suspend", {"reason": "unpaid"}, minutes=2)
    assert (service_row(history)["status"], service_row(history)["pending"]) == (
        "active",
        "suspend",
    )
    history.outcome("mark_suspended", minutes=3)
    assert (service_row(history)["status"], service_row(history)["pending"]) == (
        "suspended",
        None,
    )
    history.ask("unsuspend", minutes=4)
    assert service_row(history)["pending"] == "unsuspend"
    history.outcome("mark_unsuspended", minutes=5)
    row = service_row(history)
    assert (row["status"], row["pending"]) == ("active", None)
    assert row["updated_at"] == "2026-11-23T12:05:00.000000+00:00"
    assert row["ordered_at"] == "2026-11-23T12:00:00.000000+00:00"


def test_activation_completes_the_progress_and_clears_the_pending_deploy() -> None:
    history = History([ServicesView()])
    history.outcome("mark_active")
    row = service_row(history)
    assert (row["status"], row["pending"]) == ("active", None)
    assert row["progress_done"] == row["progress_total"]


def test_terminate_goes_through_terminating_to_terminated() -> None:
    history = History([ServicesView()])
    history.outcome("mark_active", minutes=1)
    history.ask("terminate", {"force": True}, minutes=2)
    assert (service_row(history)["status"], service_row(history)["pending"]) == (
        "terminating",
        "terminate",
    )
    history.outcome("mark_terminated", minutes=3, leftovers=[])
    assert (service_row(history)["status"], service_row(history)["pending"]) == (
        "terminated",
        None,
    )


def test_deploy_failure_redeploy_plan_change_and_verify() -> None:
    history = History([ServicesView()])
    history.outcome("mark_deploy_failed", minutes=1, reason="web node refused")
    assert service_row(history)["status"] == "deploy_failed"
    history.ask("redeploy", minutes=2)
    row = service_row(history)
    assert (row["status"], row["pending"], row["progress_done"]) == ("provisioning", "deploy", 0)
    history.outcome("mark_active", minutes=3)
    history.ask("change-plan", {"plan": {"package": "platinum"}}, minutes=4)
    assert service_row(history)["plan"]["package"] == "platinum"
    history.ask("verify-repair", minutes=5)
    assert service_row(history)["pending"] == "verify"
    history.ask("factory-reset", minutes=6)
    assert (service_row(history)["status"], service_row(history)["pending"]) == (
        "provisioning",
        "deploy",
    )


def test_the_oplog_has_one_row_per_event_with_its_actor_and_never_a_password() -> None:
    history = History([OperationLogView()], password="Sup3r-secret!")
    history.ask("suspend", {"reason": "unpaid", "command_id": "c-1"}, minutes=1)
    history.outcome("mark_suspended", minutes=2)
    history.ask("terminate", {"force": False}, minutes=3)
    history.outcome("mark_terminated", minutes=4, leftovers=[{"role": "dns", "item": "zone"}])
    log = history.table("oplog")
    assert [(e["position"], e["action"], e["kind"], e["actor"]) for e in log] == [
        (1, "order", "command", "whmcs"),
        (2, "suspend", "command", "whmcs"),
        (3, "suspended", "outcome", "hostwright"),
        (4, "terminate", "command", "whmcs"),
        (5, "terminated-with-leftovers", "outcome", "hostwright"),
    ]
    assert {e["service_id"] for e in log} == {"42"}
    assert log[0]["detail"]["mode"] == "split" and log[0]["detail"]["domain"] == "shop.example.com"
    assert log[1]["detail"] == {"reason": "unpaid", "command_id": "c-1"}
    assert log[3]["detail"] == {"force": False}
    assert log[4]["detail"] == {"leftovers": [{"role": "dns", "item": "zone"}]}
    assert log[2]["at"] == "2026-11-23T12:02:00.000000+00:00"
    text = repr(log)
    assert "password" not in text and "sealed" not in text and "Sup3r" not in text


def test_views_ignore_events_of_a_service_they_never_saw_ordered() -> None:
    seen = History(all_views())
    body = {
        "service_id": 99,
        "client_id": 7,
        "mode": "split",
        "domain": "other.example.com",
        "plan": {"package": "default"},
    }
    stranger = Service.order(parse_order(body, now=NOW, actor="whmcs"), None)
    stranger.collect_events()  # recorded elsewhere: its order never reached the views
    stranger.mark_active(NOW)
    for event in stranger.collect_events():
        for view in seen.views:
            view.apply(Recorded(position=99, event=event), seen.rows)
    assert len(seen.table("oplog")) == 1
    assert seen.table("services") == [service_row(seen)]


def test_every_view_in_the_catalogue_has_a_unique_name_and_tables() -> None:
    views = all_views()
    assert [v.name for v in views] == [
        "services",
        "oplog",
        "task_queue",
        "timeline",
        "ssl",
        "usage",
    ]
    tables = [t.name for v in views for t in v.tables]
    assert len(tables) == len(set(tables))


def test_a_view_given_only_the_events_it_folds_makes_the_same_rows() -> None:
    # replay skips (and never decodes) an event no view folds: a type a view reacts to but
    # left out of its ``folds`` would make the replay differ from the live view
    made = []
    for only_folded in (False, True):
        history = History(all_views(), only_folded=only_folded)
        history.outcome("mark_deploy_failed", minutes=1, reason="web node refused")
        history.ask("redeploy", minutes=2)
        history.outcome("mark_active", minutes=3)
        history.ask("change-plan", {"plan": {"package": "platinum"}}, minutes=4)
        history.outcome("mark_plan_applied", minutes=4)
        history.ask("verify-repair", minutes=5)
        history.ask("suspend", {"reason": "unpaid"}, minutes=6)
        history.outcome("mark_suspended", minutes=7)
        history.ask("unsuspend", minutes=8)
        history.outcome("mark_unsuspended", minutes=9)
        history.ask("terminate", {"force": True}, minutes=10)
        history.outcome("mark_terminated", minutes=11, leftovers=[])
        made.append({name: history.table(name) for name in history.rows.tables})
    assert made[0]["oplog"] and made[0] == made[1]


def leaf_service_events() -> list[type[Any]]:
    """Every event class the Service aggregate records (its bases, ``Event`` and
    ``Requested``, are never recorded themselves; nor is ``Created``, the library's default
    that the aggregate's metaclass adds: ``Service.order`` records ``Ordered``)."""
    declared = [
        kind
        for name, kind in vars(Service).items()
        if isinstance(kind, type) and issubclass(kind, Aggregate.Event) and name != "Created"
    ]
    return [k for k in declared if not any(o is not k and issubclass(o, k) for o in declared)]


def test_every_service_event_has_an_oplog_line() -> None:
    # A new Service event must be given an oplog line (projections/oplog_view.py ENTRIES):
    # a person reading the log looks for every request and every outcome.
    events = leaf_service_events()
    assert {"Ordered", "PlanApplied", "OperationFailed", "Terminated"} <= {
        e.__name__ for e in events
    }
    assert [e.__name__ for e in events if e not in ENTRIES] == []


def actions(history: History) -> list[tuple[str, str, str, dict[str, Any]]]:
    return [(e["action"], e["kind"], e["actor"], e["detail"]) for e in history.table("oplog")]


def test_the_oplog_tells_every_outcome_in_words() -> None:
    history = History([OperationLogView()], plan={"package": "gold"})
    history.outcome("wait_for_placement", minutes=1, reason="no node has the role mail")
    placement = {"web_server": "web1", "mail_server": "mail1", "dns_servers": ["dns1"]}
    history.outcome("place", minutes=2, placement=placement)
    history.outcome("mark_active", minutes=3)
    history.ask("change-plan", {"plan": {"package": "silver"}}, minutes=4)
    history.outcome("mark_plan_applied", minutes=5)
    history.ask("change-plan", {"plan": {"package": "bronze"}}, minutes=6)
    history.outcome(
        "mark_operation_failed", minutes=7, operation="change_plan", reason="web1: quota"
    )
    history.ask("suspend", {"reason": "unpaid"}, minutes=8)
    history.outcome("mark_operation_failed", minutes=9, operation="suspend", reason="web1: down")
    history.outcome("reseal_password", minutes=10, password_sealed="v2:k2:new", key_id="k2")
    history.ask("terminate", {"force": True}, minutes=11)
    history.outcome("mark_terminated", minutes=12, leftovers=[{"role": "web", "item": "user"}])
    outcomes = [a for a in actions(history) if a[1] == "outcome"]
    assert outcomes == [
        ("placement-waiting", "outcome", "hostwright", {"reason": "no node has the role mail"}),
        ("placed", "outcome", "hostwright", {"placement": placement}),
        ("activated", "outcome", "hostwright", {}),
        ("plan-applied", "outcome", "hostwright", {}),
        ("change-plan-failed", "outcome", "hostwright", {"reason": "web1: quota"}),
        ("suspend-failed", "outcome", "hostwright", {"reason": "web1: down"}),
        ("password-resealed", "outcome", "hostwright", {"key_id": "k2"}),
        (
            "terminated-with-leftovers",
            "outcome",
            "hostwright",
            {"leftovers": [{"role": "web", "item": "user"}]},
        ),
    ]
    assert "v2:k2:new" not in repr(history.table("oplog"))


def test_a_terminate_or_unsuspend_that_fails_is_logged_as_such() -> None:
    history = History([OperationLogView()], plan={"package": "gold"})
    history.outcome("mark_active", minutes=1)
    history.ask("suspend", {"reason": "unpaid"}, minutes=2)
    history.outcome("mark_suspended", minutes=3)
    history.ask("unsuspend", minutes=4)
    history.outcome("mark_operation_failed", minutes=5, operation="unsuspend", reason="down")
    history.ask("terminate", {"force": False}, minutes=6)
    history.outcome("mark_operation_failed", minutes=7, operation="terminate", reason="refused")
    history.outcome("mark_terminated", minutes=8, leftovers=[])
    assert [a[0] for a in actions(history) if a[1] == "outcome"] == [
        "activated",
        "suspended",
        "unsuspend-failed",
        "terminate-failed",
        "terminated",
    ]
