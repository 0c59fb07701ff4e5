"""Step actions that suspend and unsuspend: ``suspend_user``/``unsuspend_user`` and
``suspend_dns_record``/``unsuspend_dns_record`` (mailboxes: handlers/mailbox_steps.py).

Each probes first and acts only when the object is not yet as wanted, then checks again.
Hestia's "already so" exits count as done: 5 (suspended) from a suspend, 6 (unsuspended) from
an unsuspend. Something that is not there (exit 3, or absent from the listing) cannot be
suspended: that is a permanent error naming it. ``v-suspend-user`` marks the user suspended
only after its web, mail and DNS domains, so a suspended user is a finished suspend;
``v-unsuspend-user`` clears the mark first, so an unsuspend also looks at the user's
``SUSPENDED_WEB``/``_MAIL``/``_DNS`` counts. A record is found by name, type and value, never
by a stored id: ids change when a record is re-added. Each acts only on what carries the
service's owner mark (handlers/ownership.py): a user named for it, a record with its TXT mark
at the same name; anything else is a permanent conflict, and nothing is changed.
"""

from __future__ import annotations

from typing import Any

from handlers.dns_records import DesiredRecord, listed_key
from handlers.hestia_command import PermanentNodeError, TransientNodeError
from handlers.ownership import our_user, owner_param, record_mark, record_marks, require_ours
from handlers.step import NodeDriver, StepLog, StepOutcome, apply, domain_name, text

SUSPENDED_COUNTS = ("SUSPENDED_WEB", "SUSPENDED_MAIL", "SUSPENDED_DNS")


async def _our_user(driver: NodeDriver, user: str, owner: str, verb: str) -> dict[str, Any]:
    conf = await our_user(driver, user, owner)
    if conf is None:
        raise PermanentNodeError(
            f"{driver.server_id}: user {user} does not exist; there is nothing to {verb}"
        )
    return conf


def _fully_unsuspended(conf: dict[str, Any]) -> bool:
    return conf.get("SUSPENDED") != "yes" and all(
        str(conf.get(key) or "0") == "0" for key in SUSPENDED_COUNTS
    )


async def suspend_user(
    driver: NodeDriver, params: dict[str, Any], inputs: dict[str, Any], log: StepLog
) -> StepOutcome:
    """Hestia user ``user`` suspended, with its web, mail and DNS domains (``v-suspend-user``).

    params: ``user``, ``owner`` (the service id: a user without its mark is a conflict).
    Already suspended → unchanged. Absent → permanent error. outputs: none.
    """
    user, owner = text(params, "user"), owner_param(params)
    if (await _our_user(driver, user, owner, "suspend")).get("SUSPENDED") == "yes":
        log.note(f"user {user}: already suspended")
        return StepOutcome(False)
    changed = await apply(driver, log, ["v-suspend-user", user], also_ok=(5,)) == 0
    if (await _our_user(driver, user, owner, "suspend")).get("SUSPENDED") != "yes":
        raise TransientNodeError(f"{driver.server_id}: user {user} is still not suspended")
    return StepOutcome(changed)


async def unsuspend_user(
    driver: NodeDriver, params: dict[str, Any], inputs: dict[str, Any], log: StepLog
) -> StepOutcome:
    """Hestia user ``user`` and all its domains unsuspended (``v-unsuspend-user``).

    params: ``user``, ``owner``. Not suspended, and none of its domains → unchanged. Absent →
    permanent error. outputs: none.
    """
    user, owner = text(params, "user"), owner_param(params)
    if _fully_unsuspended(await _our_user(driver, user, owner, "unsuspend")):
        log.note(f"user {user}: not suspended")
        return StepOutcome(False)
    changed = await apply(driver, log, ["v-unsuspend-user", user], also_ok=(6,)) == 0
    if (await _our_user(driver, user, owner, "unsuspend")).get("SUSPENDED") == "yes":
        raise TransientNodeError(f"{driver.server_id}: user {user} is still suspended")
    return StepOutcome(changed)


def _record(params: dict[str, Any]) -> DesiredRecord:
    fields = ("record", "type", "value", "priority")
    return DesiredRecord.parse({k: v for k, v in params.items() if k in fields})


async def _copies(
    driver: NodeDriver, user: str, domain: str, record: DesiredRecord, owner: str, verb: str
) -> dict[str, bool]:
    """id → suspended? of every copy of ``record``; a permanent error when there is none, or
    when its name does not carry ``owner``'s mark alone."""
    listed = await driver.probe_json(["v-list-dns-records", user, domain])
    if listed is None:
        raise PermanentNodeError(
            f"{driver.server_id}: DNS zone {domain} of {user} does not exist; "
            f"cannot {verb} {record.describe()}"
        )
    copies = {
        str(entry.get("ID", ident)): entry.get("SUSPENDED") == "yes"
        for ident, entry in dict(listed).items()
        if listed_key(entry) == record.key
    }
    if not copies:
        raise PermanentNodeError(
            f"{driver.server_id}: {record.describe()} is not in {domain}; cannot {verb} it "
            "(a redeploy puts it back)"
        )
    marks = record_marks(dict(listed), record.record)
    require_ours(driver, f"record {record.describe()} in {domain}", marks, record_mark(owner))
    return copies


async def _switch_record(
    driver: NodeDriver, params: dict[str, Any], log: StepLog, *, suspend: bool
) -> StepOutcome:
    user, domain, record = text(params, "user"), domain_name(params), _record(params)
    owner = owner_param(params)
    verb = "suspend" if suspend else "unsuspend"
    copies = await _copies(driver, user, domain, record, owner, verb)
    pending = [ident for ident, state in copies.items() if state != suspend]
    if not pending:
        log.note(f"{domain}: {record.describe()} already {verb}ed")
        return StepOutcome(False)
    exits = set()
    for ident in pending:
        # 3: the copy went away meanwhile (the check below decides); 5/6: see the module doc
        argv = [f"v-{verb}-dns-record", user, domain, ident]
        exits.add(await apply(driver, log, argv, also_ok=(3, 5, 6)))
    after = await _copies(driver, user, domain, record, owner, verb)
    if any(state != suspend for state in after.values()):
        if not suspend and 5 in exits:
            raise PermanentNodeError(
                f"{driver.server_id}: zone {domain} of {user} is suspended as a whole; "
                f"{record.describe()} cannot be unsuspended on its own"
            )
        raise TransientNodeError(
            f"{driver.server_id}: {record.describe()} in {domain} is not {verb}ed yet"
        )
    return StepOutcome(0 in exits)


async def suspend_dns_record(
    driver: NodeDriver, params: dict[str, Any], inputs: dict[str, Any], log: StepLog
) -> StepOutcome:
    """Every copy of exactly this record suspended (no longer published); nothing else.

    params: ``user`` (the zone's holder), ``domain`` (the zone), ``owner``, ``record``,
    ``type``, ``value``, ``priority?``. Already suspended → unchanged. Zone or record absent,
    or the name without ``owner``'s mark → permanent error. outputs: none.
    """
    return await _switch_record(driver, params, log, suspend=True)


async def unsuspend_dns_record(
    driver: NodeDriver, params: dict[str, Any], inputs: dict[str, Any], log: StepLog
) -> StepOutcome:
    """Every copy of exactly this record published again; nothing else.

    params: as ``suspend_dns_record``. Not suspended → unchanged. Zone or record absent, or
    the whole zone suspended → permanent error. outputs: none.
    """
    return await _switch_record(driver, params, log, suspend=False)
