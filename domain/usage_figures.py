"""What a node's listings say, as figures: pure reading of Hestia's JSON, and the rule that
keeps a month's billed bandwidth from ever going down.

``user_figures`` consumes ``v-list-users json`` (Hestia 1.10: each user's ``U_DISK`` and
``U_BANDWIDTH`` in MiB, ``U_WEB_DOMAINS``, ``U_DNS_DOMAINS``, ``U_MAIL_DOMAINS``,
``U_MAIL_ACCOUNTS``, ``U_DATABASES`` counts; the same names without ``U_`` are the package's
limits, not usage) and emits ``{user: {disk_mb, bandwidth_mb, …}}`` (domain/server_usage.py
``UNITS``). ``mailbox_figures`` reads ``v-list-mail-accounts USER DOMAIN json`` (each
mailbox's ``U_DISK``). ``billed_bandwidth`` is the counter rule: Hestia's ``U_BANDWIDTH`` is
month to date, recounted daily and reset on the node's own 1st (deleting a web domain lowers
it too): add only increases; a drop adds nothing; a reset known to lie between two listings
(the node was down over the 1st) bills the new value whole.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from domain.errors import InvalidInput

USER_FIELDS = {
    "disk_mb": "U_DISK",
    "bandwidth_mb": "U_BANDWIDTH",
    "web_domains": "U_WEB_DOMAINS",
    "dns_domains": "U_DNS_DOMAINS",
    "mail_domains": "U_MAIL_DOMAINS",
    "mail_accounts": "U_MAIL_ACCOUNTS",
    "databases": "U_DATABASES",
}


def _whole(value: Any) -> int:
    """A Hestia figure: digits as text (an empty one is 0); anything else is refused."""
    if isinstance(value, int) and not isinstance(value, bool):
        return max(0, value)
    text = str(value).strip()
    if text == "":
        return 0
    try:
        return max(0, int(float(text)))
    except ValueError:
        raise InvalidInput(f"not a figure: {text[:40]!r}") from None


def user_figures(listing: Any) -> dict[str, dict[str, int]]:
    """``v-list-users json`` → each user's figures."""
    if not isinstance(listing, dict):
        raise InvalidInput("v-list-users did not answer a JSON object")
    found: dict[str, dict[str, int]] = {}
    for user, fields in listing.items():
        if not isinstance(fields, dict):
            raise InvalidInput(f"v-list-users: user {str(user)[:40]!r} is not an object")
        found[str(user)] = {name: _whole(fields.get(key, 0)) for name, key in USER_FIELDS.items()}
    return found


def mailbox_figures(listing: Any) -> dict[str, dict[str, int]]:
    """``v-list-mail-accounts USER DOMAIN json`` → each mailbox's disk use (MiB)."""
    if not isinstance(listing, dict):
        raise InvalidInput("v-list-mail-accounts did not answer a JSON object")
    return {
        str(account): {
            "disk_mb": _whole(fields.get("U_DISK", 0)) if isinstance(fields, dict) else 0
        }
        for account, fields in listing.items()
    }


# Hestia resets ``U_BANDWIDTH`` on the node's own 1st (its daily recount, 00:10 node time);
# node clocks run from UTC-12 to UTC+14, so the reset of a month falls between 14 h before
# and 13 h after the month's UTC start
RESET_EARLIEST = timedelta(hours=14)
RESET_LATEST = timedelta(hours=13)


def billed_bandwidth(counter: dict[str, Any] | None, at: datetime, reported: int) -> dict[str, Any]:
    """The bandwidth counter of one user after a listing at ``at`` (UTC) that reported
    ``reported`` MiB: ``{"month", "last", "billed", "at"}``, ``billed`` counting into the UTC
    month of ``at``. The rule never bills a MiB twice:

    - an increase since the last listing adds the increase;
    - a drop adds 0 and only lowers ``last`` (a deleted domain, a recount, or the node's
      reset seen mid-window: what remains was already billed, or cannot be told apart from it);
    - a listing no later than the last one changes nothing (an old listing arriving late);
    - when the last listing was before the month's earliest possible reset and this one after
      its latest (the node was down over the 1st), the node certainly reset in between: the
      value reported is all since the reset, and is billed whole.

    A new UTC month starts its bill at 0. Its limits (docs/operations.md): traffic between
    the node's reset and the next listing is not billed when the listings around the reset are
    closer than the window, and traffic between the last listing of a month and the node's
    reset (a node behind UTC) is billed in the new month."""
    when = at.astimezone(UTC)
    month = f"{when:%Y-%m}"
    moment = when.isoformat(timespec="microseconds")
    if counter is None:
        return {"month": month, "last": reported, "billed": reported, "at": moment}
    before = datetime.fromisoformat(counter["at"])
    if when <= before:
        return counter
    billed = counter["billed"] if counter["month"] == month else 0
    start = datetime(when.year, when.month, 1, tzinfo=UTC)
    if before < start - RESET_EARLIEST and when >= start + RESET_LATEST:
        added = reported  # the node reset between the two listings: all of it is this month's
    else:
        added = max(0, reported - counter["last"])
    return {"month": month, "last": reported, "billed": billed + added, "at": moment}
