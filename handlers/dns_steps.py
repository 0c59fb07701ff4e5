"""Step actions for DNS on Hestia: zones and records.

``v-add-dns-record`` appends a duplicate when the record is already there, so record steps
always list the zone first, add only what is missing, and delete extra copies of the records
they want (never anything else, unless a record asks for ``replace``).

Ownership (handlers/ownership.py): a zone and its records are the service's when the user
holding the zone carries its owner mark. A single record in someone else's zone (vanity's
``<label>`` in the provider's) is the service's when a TXT ``hostwright-owner=<owner>`` sits at
the same name, alone: ``ensure_dns_record`` writes that mark before the record, on a name no
record uses yet, and ``remove_dns_record`` removes it after the last record at that name, so
a crash between the two leaves a mark to find again, never a record nobody can prove. A name
in use without the mark, or with another's, is refused and left as it is.
"""

from __future__ import annotations

from typing import Any

from handlers.dns_records import TEXT_TYPES, DesiredRecord, RecordKey, listed_key
from handlers.hestia_command import PermanentNodeError, TransientNodeError
from handlers.mail_steps import DKIM_RECORD
from handlers.ownership import (
    our_user,
    owner_param,
    raise_conflict,
    record_mark,
    record_marks,
    require_ours,
)
from handlers.step import (
    NodeDriver,
    StepLog,
    StepOutcome,
    StepParamsError,
    apply,
    domain_name,
    listed_domain,
    remove_domain,
    text,
    text_list,
)


async def ensure_dns_zone(
    driver: NodeDriver, params: dict[str, Any], inputs: dict[str, Any], log: StepLog
) -> StepOutcome:
    """The DNS zone ``domain`` held by ``user``, made from Hestia's default template.

    params: ``user``, ``domain``, ``ip`` (the A record of the template), ``nameservers``
    (optional list, up to 8; without two or more Hestia takes the user's package NS),
    ``owner`` (the user must carry its mark). Another user's zone → permanent conflict.
    outputs: none.
    """
    user, domain, ip = text(params, "user"), domain_name(params), text(params, "ip")
    nameservers = text_list(params, "nameservers")
    if len(nameservers) > 8:
        raise StepParamsError("Hestia takes at most 8 name servers")
    await our_user(driver, user, owner_param(params))
    if await listed_domain(driver, "dns", user, domain) is not None:
        log.note(f"DNS zone {domain}: present for {user}")
        return StepOutcome(False)
    argv = ["v-add-dns-domain", user, domain, ip, *nameservers]
    changed = await apply(driver, log, argv, also_ok=(4,)) == 0
    if not changed:
        await raise_conflict(driver, log, "dns", domain, user)
    if await listed_domain(driver, "dns", user, domain) is None:
        raise TransientNodeError(f"{driver.server_id}: DNS zone {domain} is still absent")
    return StepOutcome(changed)


async def _records(driver: NodeDriver, user: str, domain: str) -> dict[str, dict[str, Any]]:
    found = await driver.probe_json(["v-list-dns-records", user, domain])
    if found is None:
        raise PermanentNodeError(f"{driver.server_id}: DNS zone {domain} of {user} is absent")
    return dict(found)


def _by_key(listed: dict[str, dict[str, Any]]) -> dict[RecordKey, list[str]]:
    ids: dict[RecordKey, list[str]] = {}
    for ident, entry in sorted(listed.items(), key=lambda item: int(item[0])):
        ids.setdefault(listed_key(entry), []).append(str(entry.get("ID", ident)))
    return ids


async def converge_records(
    driver: NodeDriver, log: StepLog, user: str, domain: str, wanted: list[DesiredRecord]
) -> bool:
    """Makes each wanted record present exactly once; True if anything changed."""
    changed = False
    wanted_keys = {record.key for record in wanted}
    listed = await _records(driver, user, domain)
    ids = _by_key(listed)
    for record in wanted:
        found = ids.get(record.key, [])
        if not found:
            log.note(f"{domain}: adding {record.describe()}")
            await apply(driver, log, ["v-add-dns-record", user, domain, *record.argv_tail])
            changed = True
        for extra in found[1:]:
            log.note(f"{domain}: removing duplicate #{extra} of {record.describe()}")
            await apply(driver, log, ["v-delete-dns-record", user, domain, extra], also_ok=(3,))
            changed = True
        if record.replace:
            for ident, entry in listed.items():
                key = listed_key(entry)
                if _displaced_by(record, key) and key not in wanted_keys:
                    log.note(f"{domain}: replacing #{ident} {key[0]} {key[1]} {key[3]}")
                    argv = ["v-delete-dns-record", user, domain, str(entry.get("ID", ident))]
                    await apply(driver, log, argv, also_ok=(3,))
                    changed = True
    after = _by_key(await _records(driver, user, domain))
    for record in wanted:
        if len(after.get(record.key, [])) != 1:
            raise TransientNodeError(
                f"{driver.server_id}: {domain} holds {len(after.get(record.key, []))} copies "
                f"of {record.describe()} after the change"
            )
    return changed


def _displaced_by(record: DesiredRecord, key: RecordKey) -> bool:
    """Whether a listed record must go for ``record`` (asking to replace) to hold alone:
    the same name and type — for TXT only one of the same kind (``v=spf1``, ``v=DMARC1``,
    ``v=DKIM1``), so a customer's verification TXT stays — or a CNAME, which may not share
    its name with any other data (Hestia's template has ``www CNAME`` where we want an A)."""
    name, rtype, _, value = key
    if name != record.record:
        return False
    if rtype == "CNAME" and record.type != "CNAME":
        return True
    if rtype != record.type:
        return False
    if rtype in TEXT_TYPES:
        kind = _txt_kind(record.key[3])
        return kind is not None and _txt_kind(value) == kind
    return True


def _txt_kind(value: str) -> str | None:
    head = value.strip().split(";", 1)[0].split(" ", 1)[0].lower()
    return head if head.startswith("v=") else None


def _wanted(params: dict[str, Any], inputs: dict[str, Any]) -> list[DesiredRecord]:
    raw = params.get("records", [])
    if not isinstance(raw, list):
        raise StepParamsError("param 'records' must be a list of records")
    wanted = [DesiredRecord.parse(item) for item in raw]
    dkim = inputs.get("dkim_txt")
    if dkim is not None:
        # A new DKIM key must not leave the old one published beside it: replace.
        wanted.append(
            DesiredRecord.parse(
                {"record": DKIM_RECORD, "type": "TXT", "value": dkim, "replace": True}
            )
        )
    unique: dict[RecordKey, DesiredRecord] = {}
    for record in wanted:
        unique.setdefault(record.key, record)
    return list(unique.values())


async def ensure_dns_records(
    driver: NodeDriver, params: dict[str, Any], inputs: dict[str, Any], log: StepLog
) -> StepOutcome:
    """The records the service wants in its own zone, each exactly once.

    params: ``user``, ``domain``, ``records``: a list of ``{record, type, value, priority?,
    ttl?, replace?}`` (``record`` relative to the zone, ``@`` for its apex; ``replace: true``
    removes other values of the same name and type). inputs: ``dkim_txt`` (from
    ``ensure_dkim``) adds ``mail._domainkey TXT <dkim_txt>`` with replace. Records not wanted
    are left alone. ``owner``: the zone's user must carry its mark. outputs: ``records`` (how
    many were wanted).
    """
    user, domain = text(params, "user"), domain_name(params)
    wanted = _wanted(params, inputs)
    await our_user(driver, user, owner_param(params))
    changed = await converge_records(driver, log, user, domain, wanted)
    if not changed:
        log.note(f"{domain}: all {len(wanted)} wanted records present once")
    return StepOutcome(changed, {"records": len(wanted)})


def _mark_of(record: DesiredRecord, owner: str) -> DesiredRecord:
    mark = {"record": record.record, "type": "TXT", "value": record_mark(owner)}
    return DesiredRecord.parse(mark)


def _name_in_use(listed: dict[str, dict[str, Any]], name: str) -> bool:
    return any(listed_key(entry)[0] == name for entry in listed.values())


async def ensure_dns_record(
    driver: NodeDriver, params: dict[str, Any], inputs: dict[str, Any], log: StepLog
) -> StepOutcome:
    """One record of this service in a zone held by another user (vanity's record in the
    provider's zone), with its owner mark.

    params: ``user`` (the zone's holder), ``domain`` (the zone), ``owner`` (the service id),
    ``record``, ``type``, ``value``, ``priority?``, ``ttl?``, ``replace?`` (default false; true
    removes other values of this very name and type). The name must be free or carry only
    this service's mark: then the mark ``<record> TXT hostwright-owner=<owner>`` is made
    first, the record after it. A name used without the mark, or marked by another service →
    permanent conflict, nothing changed. No other record is touched. outputs: ``fqdn``.
    """
    user, domain, owner = text(params, "user"), domain_name(params), owner_param(params)
    fields = {k: v for k, v in params.items() if k not in ("user", "domain", "owner")}
    record = DesiredRecord.parse(fields)
    mark = _mark_of(record, owner)
    what = f"record {record.record} in {domain}"
    listed = await _records(driver, user, domain)
    marks = record_marks(listed, record.record)
    if marks or _name_in_use(listed, record.record):
        require_ours(driver, what, marks, mark.value)
    changed = False
    if marks != [mark.value]:  # not yet marked, or marked more than once
        changed = await converge_records(driver, log, user, domain, [mark])
    if changed:
        # another service may have marked the same free name at the same moment
        marks = record_marks(await _records(driver, user, domain), record.record)
        if set(marks) != {mark.value}:
            await delete_copies(driver, log, user, domain, mark)
            require_ours(driver, what, marks, mark.value)
    changed = await converge_records(driver, log, user, domain, [record]) or changed
    if not changed:
        log.note(f"{domain}: {record.describe()} present once, with its owner mark")
    fqdn = domain if record.record == "@" else f"{record.record}.{domain}"
    return StepOutcome(changed, {"fqdn": fqdn})


async def delete_copies(
    driver: NodeDriver, log: StepLog, user: str, domain: str, record: DesiredRecord
) -> bool:
    """Deletes every copy of ``record``; True if there was one. Checks none is left."""
    listed = await driver.probe_json(["v-list-dns-records", user, domain])
    found = _by_key(dict(listed)).get(record.key, []) if listed is not None else []
    for ident in found:
        await apply(driver, log, ["v-delete-dns-record", user, domain, ident], also_ok=(3,))
    if found and _by_key(await _records(driver, user, domain)).get(record.key):
        raise TransientNodeError(f"{driver.server_id}: {record.describe()} is still in {domain}")
    return bool(found)


async def remove_dns_record(
    driver: NodeDriver, params: dict[str, Any], inputs: dict[str, Any], log: StepLog
) -> StepOutcome:
    """No copy of exactly this record (name, type, priority and value all match); then, once
    nothing else is left at its name, no owner mark of this service there either.

    params: ``user``, ``domain``, ``owner``, ``record``, ``type``, ``value``, ``priority?``.
    The record's name must carry this service's mark alone: without it, or with another's →
    permanent "refused", left as it is. A zone or record already absent → unchanged (a mark
    left alone at the name by an interrupted removal goes). outputs: none.
    """
    user, domain, owner = text(params, "user"), domain_name(params), owner_param(params)
    record = DesiredRecord.parse(
        {k: v for k, v in params.items() if k in ("record", "type", "value", "priority")}
    )
    mark = _mark_of(record, owner)
    listed = await driver.probe_json(["v-list-dns-records", user, domain])
    if listed is None:
        log.note(f"{domain}: absent, and {record.describe()} with it")
        return StepOutcome(False)
    changed = False
    if _by_key(dict(listed)).get(record.key):
        what = f"record {record.describe()} in {domain}"
        marks = record_marks(dict(listed), record.record)
        require_ours(driver, what, marks, mark.value, removal=True)
        changed = await delete_copies(driver, log, user, domain, record)
        listed = await _records(driver, user, domain)
    else:
        log.note(f"{domain}: {record.describe()} already absent")
    if mark.value in record_marks(dict(listed), record.record) and not _holds_more_than_marks(
        dict(listed), record.record
    ):
        log.note(f"{domain}: nothing left at {record.record}; removing its owner mark")
        changed = await delete_copies(driver, log, user, domain, mark) or changed
    return StepOutcome(changed)


def _holds_more_than_marks(listed: dict[str, dict[str, Any]], name: str) -> bool:
    """Whether ``name`` holds a record that is not an owner mark (the mark guards the name
    while anything of the service is there)."""
    marks = set(record_marks(listed, name))
    keys = [listed_key(entry) for entry in listed.values()]
    return any(n == name and not (t == "TXT" and v in marks) for (n, t, _, v) in keys)


async def remove_dns_zone(
    driver: NodeDriver, params: dict[str, Any], inputs: dict[str, Any], log: StepLog
) -> StepOutcome:
    """No DNS zone ``domain`` for ``user``. params: ``user``, ``domain``, ``owner`` (a user
    without its mark → permanent "refused", left as it is). Absent → unchanged."""
    user, domain = text(params, "user"), domain_name(params)
    await our_user(driver, user, owner_param(params), removal=True)
    return await remove_domain(
        driver,
        log,
        f"DNS zone {domain}",
        user,
        lambda: listed_domain(driver, "dns", user, domain),
        ["v-delete-dns-domain", user, domain],
    )
