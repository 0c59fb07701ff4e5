"""What the client area shows, from view rows: the screen each status (and a Try again under
way) shows, steps in the customer's four states with their times, a failure in plain words
cut short, usage gauges against the plan, and activity in words with staff's matters left
out."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest

from gateway.screens.client_state import TROUBLE_WORDS, client_state, customer_error

NOW = datetime(2026, 12, 3, 21, 0, 10, tzinfo=UTC)
T0 = "2026-12-03T21:00:00.000000+00:00"


def service(status: str, last_error: str | None = None) -> dict[str, Any]:
    return {
        "service_id": "1001",
        "status": status,
        "domain": "shop.example",
        "last_error": last_error,
    }


def step(name: str, state: str, **more: Any) -> dict[str, Any]:
    return {"step": name, "role": name.split(".")[0], "state": state, **more}


def state_of(status: str, steps: list[dict[str, Any]], **more: Any) -> dict[str, Any]:
    return client_state(service(status, more.get("last_error")), steps, [], None, [], NOW)


@pytest.mark.parametrize(
    ("status", "steps", "screen", "writable"),
    [
        ("provisioning", [step("web.user", "dispatched")], "splash", True),
        ("deploy_failed", [step("web.user", "error")], "error", True),
        # Try again recorded: the failed step is planned again, the status not changed yet
        (
            "deploy_failed",
            [step("web.user", "succeeded"), step("mail.domain", "planned")],
            "splash",
            True,
        ),
        ("deploy_failed", [], "error", True),
        ("active", [step("web.user", "succeeded")], "dashboard", True),
        ("suspended", [], "dashboard", False),
        ("terminated", [], "dashboard", False),
    ],
)
def test_the_screen_follows_the_status(
    status: str, steps: list[dict[str, Any]], screen: str, writable: bool
) -> None:
    found = state_of(status, steps, last_error="web.user: exit 1")
    assert (found["screen"], found["writable"]) == (screen, writable)
    assert (found["error"] is not None) is (screen == "error")


def test_steps_show_four_states_with_their_times_and_the_progress_counts_done_ones() -> None:
    found = state_of(
        "provisioning",
        [
            step("web.user", "succeeded", duration_ms=840),
            step("web.domain", "retry_scheduled", started_at=T0),
            step("mail.domain", "dispatched", started_at=T0),
            step("dns.zone", "planned"),
            step("ssl.web", "cancelled"),
        ],
    )
    assert [(s["step"], s["state"], s["duration_ms"]) for s in found["steps"]] == [
        ("web.user", "done", 840),
        ("web.domain", "running", 10_000),
        ("mail.domain", "running", 10_000),
        ("dns.zone", "waiting", None),
        ("ssl.web", "failed", None),
    ]
    assert found["progress"] == {"done": 1, "total": 5}


def test_steps_are_named_in_words_a_customer_reads() -> None:
    found = state_of(
        "provisioning",
        [
            step("web.user", "succeeded"),
            step("dns.zone@ns2", "planned"),
            step("mail.something_new", "planned"),
            step("ssl.web", "planned"),
        ],
    )
    assert [s["label"] for s in found["steps"]] == [
        "Creating your hosting account",
        "Creating your DNS zone",
        "Working on your e-mail",
        "Working on your SSL certificate",
    ]
    assert found["steps"][1]["step"] == "dns.zone@ns2"  # the page's hook keeps the name


def test_a_failure_is_worded_by_the_part_that_failed() -> None:
    assert customer_error("mail.domain: exit 8: limit\nTraceback …")["text"].startswith(
        "We could not finish setting up your email."
    )
    assert "your website" in customer_error("web.user: x; dns.zone: y")["text"]
    assert "your service" in customer_error(None)["text"]
    assert "your service" in customer_error("something odd")["text"]


# reasons as the node handlers record them (server, command with user and email, addresses,
# paths), and the kind of trouble each tells of
RECORDED = [
    (
        "mail.domain: srv-7: v-add-mail-account alice example.com info ***** exited 4 "
        "(E_EXISTS): Error: mail account info@example.com exists in /home/alice/conf",
        "refused",
    ),
    (
        "web.domain: srv-7 (10.0.3.7:22): cannot connect: [Errno 111] Connect call failed "
        "('10.0.3.7', 22)",
        "unreachable",
    ),
    ("dns.zone: srv-2 (10.0.3.9:22): no SSH connection within 10s", "timed_out"),
    (
        "web.user: srv-2: v-add-user alice ***** alice@example.com: no answer within 30s",
        "timed_out",
    ),
    ("ssl.web: srv-2 (10.0.3.9:22): the node refused our SSH key", "unreachable"),
    ("web.user: the handler's lease expired", "timed_out"),
    ("web.user: bad params for add_user: owner /srv/keys/x.pem missing", "other"),
]


@pytest.mark.parametrize(("reason", "kind"), RECORDED)
def test_a_failure_shows_a_fixed_phrase_for_its_kind_never_the_recorded_reason(
    reason: str, kind: str
) -> None:
    shown = customer_error(reason)
    assert shown["detail"] == TROUBLE_WORDS[kind]
    words = json.dumps(shown)
    for internal in ("srv-", "10.0.3", "v-add", "alice", "example.com", "/home", "/srv", "E_"):
        assert internal not in words, (internal, words)


def test_the_state_of_a_failed_service_carries_no_part_of_the_recorded_reason() -> None:
    row = {"service_id": "1", "status": "deploy_failed", "domain": "shop.test"}
    row["last_error"] = RECORDED[0][0]
    steps = [{"step": "mail.domain", "state": "error", "error": RECORDED[0][0]}]
    state = client_state(row, steps, [], None, [], NOW)
    assert state["screen"] == "error"
    assert "srv-7" not in json.dumps(state) and "info@" not in json.dumps(state)


def test_usage_gauges_against_the_plan_and_activity_in_words() -> None:
    usage = {
        "plan": {"disk_mb": 1000},
        "disk_mb": 250,
        "bandwidth_mb": 0,
        "bandwidth_billed_mb": 0,
        "billing_month": "2026-12",
        "web_domains": 1,
        "dns_domains": 1,
        "mail_domains": 1,
        "mail_accounts": 2,
        "databases": 0,
        "collected_at": T0,
        "stale": False,
    }
    activity = [
        {"at": T0, "action": "order", "kind": "command"},
        {"at": T0, "action": "password-resealed", "kind": "outcome"},
        {"at": "2026-12-03T21:00:05.000000+00:00", "action": "suspend-failed", "kind": "outcome"},
    ]
    found = client_state(service("active"), [], activity, usage, [], NOW)
    disk = found["usage"]["gauges"]["disk_mb"]
    assert (disk["used"], disk["limit"], disk["percent"]) == (250, 1000, 25.0)
    assert disk["label"] and disk["label"] != "disk_mb"
    assert found["usage"]["collected_at"] == T0
    assert [(a["action"], a["text"]) for a in found["activity"]] == [
        ("suspend-failed", "An operation could not finish"),  # newest first
        ("order", "Your order was received"),
    ]
    assert found["activity"][1]["when"] == "2026-12-03 21:00:00 UTC"


def test_a_password_change_shows_in_the_activity_in_words() -> None:
    activity = [
        {"at": T0, "action": "change-password", "kind": "command"},
        {"at": "2026-12-03T21:00:05.000000+00:00", "action": "password-changed", "kind": "outcome"},
    ]
    found = client_state(service("active"), [], activity, None, [], NOW)
    assert [a["text"] for a in found["activity"]] == [
        "Your new password is in force",
        "A new password was asked for",
    ]


@pytest.mark.parametrize(
    ("status", "requested", "writable"),
    [("active", None, True), ("active", "suspend", False), ("suspended", None, False)],
)
def test_the_page_is_writable_by_the_domains_rule(
    status: str, requested: str | None, writable: bool
) -> None:
    row = {"service_id": "1", "status": status, "domain": "shop.test", "requested": requested}
    assert client_state(row, [], [], None, [], NOW)["writable"] is writable
