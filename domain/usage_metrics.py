"""The metrics a service is billed on and shown as gauges: one definition for both.

``METRICS`` are what ``GET /v1/billing/metrics`` declares to WHMCS's metric billing (system
name, display name, unit, type: ``snapshot`` — the value now — or ``period_month`` — the
month's total) and the gauges of ``GET /v1/services/{id}/usage`` show. ``metric_values``
consumes a service's sums from the usage view and the time they are read for, and emits each
metric's value; the bill and the gauge both call it, so the number billed is the number shown.
A ``period_month`` metric counts the UTC month of that time: a row whose ``billing_month`` is
another (no listing yet since the month turned) reads 0 for it, never last month's total.
``gauges`` adds each metric's limit from the service's plan (domain/hosting_plan.py field
names; None: unlimited) and the percentage used.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any


@dataclass(frozen=True)
class Metric:
    name: str  # the system name WHMCS keys it by, and the plan's limit field
    display: str
    unit: str
    type: str  # snapshot | period_month
    column: str  # the usage view's column it is read from


METRICS = (
    Metric("disk_mb", "Disk space", "MB", "snapshot", "disk_mb"),
    # billed: what the month added, never lower than an earlier figure of the month
    Metric("bandwidth_mb", "Bandwidth", "MB", "period_month", "bandwidth_billed_mb"),
    Metric("mail_accounts", "Email accounts", "accounts", "snapshot", "mail_accounts"),
    Metric("databases", "Databases", "databases", "snapshot", "databases"),
    Metric("web_domains", "Web domains", "domains", "snapshot", "web_domains"),
)
TENANT_KEYS = ("domain", "username")


def billing_month(now: datetime) -> str:
    """The UTC month (``YYYY-MM``) a ``period_month`` metric read at ``now`` counts."""
    return f"{now.astimezone(UTC):%Y-%m}"


def metric_values(row: dict[str, Any], now: datetime) -> dict[str, int]:
    """Each metric's value from a service's row of the usage view, read at ``now``."""
    current = row.get("billing_month") == billing_month(now)
    return {
        metric.name: int(row.get(metric.column) or 0)
        if current or metric.type != "period_month"
        else 0
        for metric in METRICS
    }


def gauges(
    row: dict[str, Any], plan: dict[str, Any] | None, now: datetime
) -> dict[str, dict[str, Any]]:
    """Each metric's value at ``now``, unit, limit from the plan and percentage of it used."""
    values = metric_values(row, now)
    found: dict[str, dict[str, Any]] = {}
    for metric in METRICS:
        limit = (plan or {}).get(metric.name)
        limit = limit if isinstance(limit, int) and not isinstance(limit, bool) else None
        used = values[metric.name]
        percent = None if not limit else round(100.0 * used / limit, 1)
        found[metric.name] = {"used": used, "unit": metric.unit, "limit": limit, "percent": percent}
    return found


def definitions() -> list[dict[str, str]]:
    return [
        {"name": m.name, "display_name": m.display, "unit": m.unit, "type": m.type} for m in METRICS
    ]
