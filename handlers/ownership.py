"""Whose a user or a domain on a node is: the one ownership rule of each that the steps share.

A Hestia user is ours when its contact e-mail is the one the planner gives: Hestia has no owner
field, and refusing to adopt, change or delete a user with another contact is what keeps one
service from taking over another's account. ``require_our_user`` consumes the user's
``v-list-user`` entry and the contact, and raises the permanent error when they differ.

A domain is held by the user that lists it, for the "exists" answer (exit 4) of
``v-add-*-domain``: Hestia answers 4 both when our own user already has the domain and when
another user does; ``owner_of`` consumes a driver, the kind (``web``, ``mail`` or ``dns``) and
the domain, and emits the user that holds it (a web alias counts), or ``None``. ``conflict``
builds the permanent error the steps raise when that user is not ours.
"""

from __future__ import annotations

from typing import Any

from handlers.hestia_command import PermanentNodeError
from handlers.step import NodeDriver, StepLog


def require_our_user(
    driver: NodeDriver, user: str, conf: dict[str, Any], email: str, *, refusal: str
) -> None:
    """Raises "``refusal``: user … belongs to another contact" unless ``conf`` (the user's
    ``v-list-user`` entry) has ``email`` as its contact."""
    if str(conf.get("CONTACT", "")).lower() != email.lower():
        raise PermanentNodeError(
            f"{refusal}: user {user} on {driver.server_id} belongs to another contact"
        )


async def owner_of(driver: NodeDriver, log: StepLog, kind: str, domain: str) -> str | None:
    users = await driver.list_json(["v-list-users"])
    for user in sorted(users or {}):
        domains = await driver.probe_json([f"v-list-{kind}-domains", user]) or {}
        if domain in domains:
            return str(user)
        if kind == "web":
            for conf in domains.values():
                if domain in str(conf.get("ALIAS", "")).split(","):
                    return str(user)
    log.note(f"{kind} domain {domain}: no user on {driver.server_id} lists it")
    return None


def conflict(driver: NodeDriver, domain: str, owner: str | None) -> PermanentNodeError:
    who = owner if owner is not None else "another user"
    return PermanentNodeError(f"conflict: {domain} is owned by {who} on {driver.server_id}")


async def raise_conflict(
    driver: NodeDriver, log: StepLog, kind: str, domain: str, user: str
) -> None:
    """After an exit 4: raise the conflict unless ``user`` itself holds the domain."""
    owner = await owner_of(driver, log, kind, domain)
    if owner == user:
        return
    log.note(f"{kind} domain {domain} belongs to {owner or 'another user'}, not {user}")
    raise conflict(driver, domain, owner)
