"""What the client area shows, as one JSON-ready dict: the page renders it, ``/state`` sends
it, and every live update is it again.

``read_client_state`` consumes the screens' ports (the services, timeline and oplog views,
the usage view, the SSL view; the ledger for a service the views have not caught up with),
a service id and the time now, and emits the state, or None for a service never ordered.
``client_state`` is the pure part: rows in, state out.

The state: ``service_id, status, domain, screen`` (``splash`` while the service is built —
also after Try again, while the retried steps run —, ``error`` on ``deploy_failed``,
``dashboard`` otherwise), ``writable`` (``domain.customer_changes.customer_may_change``:
false while suspended, terminating or terminated, or a suspend or terminate is asked for),
``progress {done, total}`` and ``steps`` (the latest run: ``step, role, state`` —
``done|running|waiting|failed`` — ``duration_ms``), ``activity`` (the oplog entries a
customer cares for, newest first: ``at, when, action, kind, text``, ``text`` in words),
``error`` (``{text, detail}`` in words a customer reads: the part that failed, and a fixed
phrase for the kind of trouble — the node unreachable, refusing, too slow, or other; never
the recorded reason, which is staff's; None unless failed), ``usage`` (``{collected_at, stale,
gauges: {metric: {used, unit, limit, percent, label}}}`` or None) and ``ssl`` (per role:
``role, mode, state, not_after, frozen_until``).
Nothing here is markup: the page escapes it all.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import TYPE_CHECKING, Any

from domain.customer_changes import customer_may_change
from domain.usage_metrics import definitions, gauges
from gateway.screens.step_states import step_state

if TYPE_CHECKING:
    from gateway.screens.screen_ports import ScreenPorts

ACTIVITY_LIMIT = 10
# the operation log's actions, as a customer reads them; one not named here is not shown
# (a password re-sealed under a new key is staff's business)
ACTIVITY_WORDS = {
    "order": "Your order was received",
    "suspend": "A suspension was asked for",
    "unsuspend": "Lifting the suspension was asked for",
    "terminate": "Cancelling the service was asked for",
    "redeploy": "Setting up again was asked for",
    "factory-reset": "A reset to a fresh start was asked for",
    "verify-repair": "A check and repair was asked for",
    "change-plan": "A plan change was asked for",
    "sync-usage": "A usage update was asked for",
    "change-password": "A new password was asked for",
    "placement-waiting": "Waiting for a server to become available",
    "placed": "Servers were chosen for your service",
    "activated": "Your service is ready",
    "deploy-failed": "Setting up could not finish",
    "suspended": "The service was suspended",
    "unsuspended": "The service was unsuspended",
    "plan-applied": "The new plan is in force",
    "password-changed": "Your new password is in force",
    "terminated": "The service was cancelled",
    "terminated-with-leftovers": "The service was cancelled",
}
# what failed, by the role of the step that failed (its name's first part: ``mail.domain``)
FAILED_PARTS = {
    "web": "your website",
    "mail": "your email",
    "dns": "your domain's DNS records",
    "ssl": "your security certificate (HTTPS)",
}

# the kind of trouble a failed step's recorded reason tells of (the first that matches), and
# what a customer is told of it instead of the reason
TROUBLE_KINDS = (
    ("timed_out", re.compile(r"no answer within|no SSH connection within|timed? ?out|lease", re.I)),
    (
        "unreachable",
        re.compile(
            r"cannot connect|connection (failed|lost|refused|reset)|unreachable|no route"
            r"|host key|refused our SSH key|driver is closed|unknown server",
            re.I,
        ),
    ),
    ("refused", re.compile(r"\bexited \d+|\brefused\b|\bE_[A-Z]+\b", re.I)),
)
TROUBLE_WORDS = {
    "timed_out": "The server building it took too long to answer.",
    "unreachable": "The server building it could not be reached.",
    "refused": "The server building it refused a step of the setup.",
    "other": "Something unexpected went wrong while setting it up.",
}


def read_client_state(ports: ScreenPorts, service_id: str, now: datetime) -> dict[str, Any] | None:
    """The state of ``service_id`` from the views (synchronous: call it in a thread)."""
    row = ports.views.service(service_id) or ports.ledger.recorded_service(service_id)
    if row is None:
        return None
    steps = ports.views.timeline(service_id) or []
    activity = ports.views.oplog(service_id=service_id, since=None, limit=ACTIVITY_LIMIT)
    usage = None if ports.usage is None else ports.usage.service_usage(service_id)
    ssl = [] if ports.ssl_views is None else ports.ssl_views.ssl(service_id)
    return client_state(row, steps, activity, usage, ssl, now)


def client_state(
    row: dict[str, Any],
    steps: list[dict[str, Any]],
    activity: list[dict[str, Any]],
    usage: dict[str, Any] | None,
    ssl: list[dict[str, Any]],
    now: datetime,
) -> dict[str, Any]:
    status = str(row["status"])
    shown = [_step(step, now) for step in steps]
    states = {step["state"] for step in shown}
    retrying = "failed" not in states and bool(states & {"running", "waiting"})
    if status == "provisioning" or (status == "deploy_failed" and retrying):
        screen = "splash"
    elif status == "deploy_failed":
        screen = "error"
    else:
        screen = "dashboard"
    return {
        "service_id": str(row["service_id"]),
        "status": status,
        "domain": row.get("domain"),
        "screen": screen,
        "writable": customer_may_change(status, row.get("requested")),
        "progress": {"done": sum(s["state"] == "done" for s in shown), "total": len(shown)},
        "steps": shown,
        "activity": [_activity(entry) for entry in reversed(activity) if _shown(entry)],
        "error": customer_error(row.get("last_error")) if screen == "error" else None,
        "usage": _usage(usage, now),
        "ssl": [_certificate(cert) for cert in ssl],
    }


def customer_error(last_error: object) -> dict[str, str]:
    """The failure in words a customer reads: which part could not be set up (the first
    failed step's role), and a fixed phrase for the kind of trouble. Nothing of the
    recorded reason itself is shown — it names servers, addresses, commands, users and
    paths: that is for staff, on the console."""
    reason = str(last_error or "").strip()
    step, _, why = reason.split(";", 1)[0].partition(":")
    part = FAILED_PARTS.get(step.strip().split(".", 1)[0], "your service") if why else None
    return {
        "text": f"We could not finish setting up {part or 'your service'}. "
        "Nothing is lost: you can try again.",
        "detail": _trouble(why or reason),
    }


def _trouble(why: str) -> str:
    for kind, pattern in TROUBLE_KINDS:
        if pattern.search(why):
            return TROUBLE_WORDS[kind]
    return TROUBLE_WORDS["other"]


def _shown(entry: dict[str, Any]) -> bool:
    action = str(entry.get("action"))
    return action in ACTIVITY_WORDS or action.endswith("-failed")


def _activity(entry: dict[str, Any]) -> dict[str, Any]:
    action = str(entry.get("action"))
    at = entry.get("at")
    return {
        "at": at,
        "when": None
        if not at
        else datetime.fromisoformat(str(at)).strftime("%Y-%m-%d %H:%M:%S UTC"),
        "action": action,
        "kind": entry.get("kind"),
        "text": ACTIVITY_WORDS.get(action, "An operation could not finish"),
    }


# a step in words a customer reads (by its name before any ``@node``), else by its role
STEP_WORDS = {
    "web.package": "Preparing your hosting plan",
    "web.user": "Creating your hosting account",
    "web.domain": "Adding your website",
    "web.php": "Setting up PHP",
    "mail.domain": "Setting up e-mail for your domain",
    "mail.dkim": "Signing your e-mail (DKIM)",
    "mail.mailbox": "Creating your mailbox",
    "mail.mailbox_quota": "Setting your mailbox size",
    "dns.user": "Creating your DNS account",
    "dns.zone": "Creating your DNS zone",
    "dns.records": "Publishing your DNS records",
    "dns.record": "Publishing your DNS record",
}
ROLE_WORDS = {
    "web": "your website",
    "mail": "your e-mail",
    "dns": "your DNS",
    "ssl": "your SSL certificate",
}


def step_words(name: str | None) -> str:
    """What a step does, in words: ``dns.zone@ns2`` → "Creating your DNS zone"."""
    base = (name or "").split("@", 1)[0]
    found = STEP_WORDS.get(base)
    if found is not None:
        return found
    return f"Working on {ROLE_WORDS.get(base.split('.', 1)[0], 'your service')}"


def _step(step: dict[str, Any], now: datetime) -> dict[str, Any]:
    state = step_state(step.get("state"))
    duration = step.get("duration_ms")
    started = step.get("started_at")
    if duration is None and state == "running" and started:
        duration = max(0, int((now - datetime.fromisoformat(started)).total_seconds() * 1000))
    return {
        "step": step.get("step") or step.get("action"),
        "label": step_words(step.get("step")),
        "role": step.get("role"),
        "state": state,
        "duration_ms": duration,
    }


def _usage(row: dict[str, Any] | None, now: datetime) -> dict[str, Any] | None:
    if row is None:
        return None
    labels = {metric["name"]: metric["display_name"] for metric in definitions()}
    return {
        "collected_at": row.get("collected_at"),
        "stale": bool(row.get("stale")),
        "gauges": {
            name: {**gauge, "label": labels.get(name, name)}
            for name, gauge in gauges(row, row.get("plan"), now).items()
        },
    }


def _certificate(cert: dict[str, Any]) -> dict[str, Any]:
    shown = ("role", "mode", "state", "not_after", "frozen_until")
    return {name: cert.get(name) for name in shown}
