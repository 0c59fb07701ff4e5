"""Step actions for DNS on Hestia: zones and records.

``v-add-dns-record`` appends a duplicate when the record is already there, so record steps
always list the zone first, add only what is missing, and delete extra copies of the records
they want (never anything else, unless a record asks for ``replace``).
"""

from __future__ import annotations

from typing import Any

from handlers.dns_records import TEXT_TYPES, DesiredRecord, RecordKey, listed_key
from handlers.hestia_command import PermanentNodeError, TransientNodeError
from handlers.mail_steps import DKIM_RECORD
from handlers.ownership import raise_conflict
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
    (optional list, up to 8; without two or more Hestia takes the user's package NS).
    Another user's zone → permanent conflict. outputs: none.
    """
    user, domain, ip = text(params, "user"), domain_name(params), text(params, "ip")
    nameservers = text_list(params, "nameservers")
    if len(nameservers) > 8:
        raise StepParamsError("Hestia takes at most 8 name servers")
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
    are left alone. outputs: ``records`` (how many were wanted).
    """
    user, domain = text(params, "user"), domain_name(params)
    wanted = _wanted(params, inputs)
    changed = await converge_records(driver, log, user, domain, wanted)
    if not changed:
        log.note(f"{domain}: all {len(wanted)} wanted records present once")
    return StepOutcome(changed, {"records": len(wanted)})


async def ensure_dns_record(
    driver: NodeDriver, params: dict[str, Any], inputs: dict[str, Any], log: StepLog
) -> StepOutcome:
    """One record in a zone held by another user (vanity's record in the provider's zone).

    params: ``user`` (the zone's holder), ``domain`` (the zone), ``record``, ``type``,
    ``value``, ``priority?``, ``ttl?``, ``replace?`` (default false; true removes other
    values of this very name and type — use it only for a name the service owns). No other
    record is touched. outputs: ``fqdn``.
    """
    user, domain = text(params, "user"), domain_name(params)
    record = DesiredRecord.parse({k: v for k, v in params.items() if k not in ("user", "domain")})
    changed = await converge_records(driver, log, user, domain, [record])
    if not changed:
        log.note(f"{domain}: {record.describe()} present once")
    fqdn = domain if record.record == "@" else f"{record.record}.{domain}"
    return StepOutcome(changed, {"fqdn": fqdn})


async def remove_dns_record(
    driver: NodeDriver, params: dict[str, Any], inputs: dict[str, Any], log: StepLog
) -> StepOutcome:
    """No copy of exactly this record (name, type, priority and value all match).

    params: ``user``, ``domain``, ``record``, ``type``, ``value``, ``priority?``. A zone or
    record already absent → unchanged. outputs: none.
    """
    user, domain = text(params, "user"), domain_name(params)
    record = DesiredRecord.parse(
        {k: v for k, v in params.items() if k in ("record", "type", "value", "priority")}
    )
    listed = await driver.probe_json(["v-list-dns-records", user, domain])
    found = _by_key(dict(listed)).get(record.key, []) if listed is not None else []
    if not found:
        log.note(f"{domain}: {record.describe()} already absent")
        return StepOutcome(False)
    for ident in found:
        await apply(driver, log, ["v-delete-dns-record", user, domain, ident], also_ok=(3,))
    if _by_key(await _records(driver, user, domain)).get(record.key):
        raise TransientNodeError(f"{driver.server_id}: {record.describe()} is still in {domain}")
    return StepOutcome(True)


async def remove_dns_zone(
    driver: NodeDriver, params: dict[str, Any], inputs: dict[str, Any], log: StepLog
) -> StepOutcome:
    """No DNS zone ``domain`` for ``user``. params: ``user``, ``domain``. Absent → unchanged."""
    user, domain = text(params, "user"), domain_name(params)
    return await remove_domain(
        driver,
        log,
        f"DNS zone {domain}",
        user,
        lambda: listed_domain(driver, "dns", user, domain),
        ["v-delete-dns-domain", user, domain],
    )
