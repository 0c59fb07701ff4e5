"""What a node's listings say, as figures: pure reading of Hestia's JSON, and the rule that
keeps a month's billed bandwidth from ever going down.

``user_figures`` consumes ``v-list-users json`` (Hestia 1.10: each user's ``U_DISK`` and
``U_BANDWIDTH`` in MiB, ``U_WEB_DOMAINS``, ``U_DNS_DOMAINS``, ``U_MAIL_DOMAINS``,
``U_MAIL_ACCOUNTS``, ``U_DATABASES`` counts; the same names without ``U_`` are the package's
limits, not usage) and emits ``{user: {disk_mb, bandwidth_mb, …}}`` (domain/server_usage.py
``UNITS``). ``mailbox_figures`` reads ``v-list-mail-accounts USER DOMAIN json`` (each
mailbox's ``U_DISK``). ``billed_bandwidth`` is the counter rule: Hestia's ``U_BANDWIDTH`` is
month to date, recounted daily and reset on the node's 1st (deleting a web domain lowers it
too): add only increases, and after a drop add the new value.
"""

from __future__ import annotations

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


def billed_bandwidth(counter: dict[str, Any] | None, month: str, reported: int) -> dict[str, Any]:
    """The bandwidth counter of one user after a listing in ``month`` (``YYYY-MM``) that
    reported ``reported`` MiB: ``{"month", "last", "billed"}``. Within a month only increases
    add; a drop (Hestia's reset, a deleted domain) adds the new value whole. A new month
    starts its bill at 0 and keeps comparing with the last value reported (the node resets
    at its own midnight, which a listing may see before or after ours)."""
    if counter is None:
        return {"month": month, "last": reported, "billed": reported}
    billed = counter["billed"] if counter["month"] == month else 0
    last = counter["last"]
    added = reported - last if reported >= last else reported
    return {"month": month, "last": reported, "billed": billed + added}
