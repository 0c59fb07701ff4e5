"""Whose a thing on a node is: the owner marks a service writes, and the one rule that reads them.

Hestia has no owner field, so each service marks what it makes with its WHMCS service id (the
``owner`` param every such step carries; a task planned before owner marks has none, and
``with_owner`` gives it the task's service id), on the thing itself where Hestia allows it:

- a Hestia user: its full name (``NAME``), ``hostwright service <id>``, given to ``v-add-user``
  itself, so a user is never there without its mark; the web, mail and DNS domains a user holds
  are ours when the user is (a customer who renames itself in Hestia's panel only locks
  hostwright out of its own account: the steps then refuse it);
- a mailbox on someone else's mail domain (vanity's ``<label>@<provider domain>``): an alias
  ``hostwright.owner.<id>`` (labels have no dot, so it never names a label's mailbox; an id a
  local part cannot hold as it is becomes ``hostwright.ownerhash.<sha-256 prefix>``), added
  right after the mailbox, as Hestia needs the mailbox first;
- a record in someone else's zone (vanity's ``<label>``): a TXT record at the same name,
  ``hostwright-owner=<id>``, added before the record and removed after the last one there.

``require_ours`` consumes the marks a thing carries and the mark of the service acting, and
raises the permanent, readable refusal unless that mark is the only one: another service's
mark, or none at all (made by hand, or before owner marks), is never adopted, changed or
removed. A contact address is no proof (two orders for the same domain share
``webmaster@<domain>``); the user keeps it as its e-mail only.

A domain is held by the user that lists it, for the "exists" answer (exit 4) of
``v-add-*-domain``: Hestia answers 4 both when our own user already has the domain and when
another user does; ``owner_of`` consumes a driver, the kind (``web``, ``mail`` or ``dns``) and
the domain, and emits the user that holds it (a web alias counts), or ``None``. ``conflict``
builds the permanent error the steps raise when that user is not ours.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from typing import Any

from handlers.dns_records import listed_key
from handlers.hestia_command import PermanentNodeError
from handlers.step import NodeDriver, StepLog, StepParamsError, text

USER_MARK = "hostwright service "
MAILBOX_MARK = "hostwright.owner."
MAILBOX_HASHED_MARK = "hostwright.ownerhash."
RECORD_MARK = "hostwright-owner="
# a WHMCS service id as intake takes it (domain/commands.py parse_external_id)
_OWNER = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
# an id that reads as itself inside a mail alias: lower case, no leading or trailing - or _,
# short enough for Hestia's 64-character local part
_ALIAS_TOKEN = re.compile(r"^[a-z0-9](?:[a-z0-9_-]{0,38}[a-z0-9])?$")


# the steps on what services share (packages by content): they carry no owner
SHARED_ACTIONS = frozenset({"ensure_package", "remove_unused_packages"})


def with_owner(action: str, params: dict[str, Any], service_id: str) -> dict[str, Any]:
    """``params`` with ``owner`` = the task's service id when an owned action lacks it: a task
    planned before owner marks (in flight at the upgrade, or an errored one staff try again).
    A given ``owner`` is never replaced."""
    if action in SHARED_ACTIONS or "owner" in params:
        return params
    return {**params, "owner": service_id}


def owner_param(params: dict[str, Any]) -> str:
    """The ``owner`` param: the service id whose marks the step writes and checks."""
    owner = text(params, "owner")
    if not _OWNER.fullmatch(owner):
        raise StepParamsError("param 'owner' must be a service id (A-Z a-z 0-9 _ -, 1-64)")
    return owner


def user_mark(owner: str) -> str:
    return USER_MARK + owner


def mailbox_mark(owner: str) -> str:
    """The alias marking a mailbox: the id itself when a local part can hold it as it is,
    else a hash of it under a prefix of its own (two ids never share a mark)."""
    if _ALIAS_TOKEN.fullmatch(owner):
        return MAILBOX_MARK + owner
    return MAILBOX_HASHED_MARK + hashlib.sha256(owner.encode()).hexdigest()[:32]


def record_mark(owner: str) -> str:
    return RECORD_MARK + owner


def user_marks(conf: dict[str, Any]) -> list[str]:
    """The owner mark in a user's ``v-list-user`` entry, if its name is one."""
    name = str(conf.get("NAME", ""))
    return [name] if name.startswith(USER_MARK) else []


def mailbox_marks(conf: dict[str, Any]) -> list[str]:
    """The owner marks among a mailbox's aliases."""
    aliases = str(conf.get("ALIAS", "")).split(",")
    return [a for a in aliases if a.startswith((MAILBOX_MARK, MAILBOX_HASHED_MARK))]


def record_marks(listed: dict[str, dict[str, Any]], name: str) -> list[str]:
    """The owner marks among a zone's records (``v-list-dns-records`` entries) at ``name``."""
    keys = [listed_key(entry) for entry in listed.values()]
    return [v for (n, t, _, v) in keys if n == name and t == "TXT" and v.startswith(RECORD_MARK)]


def require_ours(
    driver: NodeDriver, what: str, marks: Iterable[str], mark: str, *, removal: bool = False
) -> None:
    """Returns when ``mark`` is the only owner mark ``what`` carries; else raises
    "conflict: …; not adopted" (or, for a removal, "refused: …; left as it is")."""
    found = set(marks)
    if found == {mark}:
        return
    others = sorted(found - {mark})
    if others:
        reason = f"belongs to another service ({', '.join(others)})"
    else:
        reason = "carries no hostwright owner mark (made by hand, or before owner marks)"
    head, tail = ("refused", "left as it is") if removal else ("conflict", "not adopted")
    raise PermanentNodeError(f"{head}: {what} on {driver.server_id} {reason}; {tail}")


async def our_user(
    driver: NodeDriver, user: str, owner: str, *, removal: bool = False
) -> dict[str, Any] | None:
    """``user``'s ``v-list-user`` entry when it carries ``owner``'s mark; None when there is
    no such user; the refusal of ``require_ours`` when it is not ours."""
    found = await driver.probe_json(["v-list-user", user])
    if found is None:
        return None
    conf = dict(found.get(user, {}))
    require_ours(driver, f"user {user}", user_marks(conf), user_mark(owner), removal=removal)
    return conf


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
