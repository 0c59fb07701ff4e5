"""Step actions for mail: ``ensure_mail_domain``, ``ensure_dkim``, ``ensure_mailbox`` and removals.

``ensure_dkim`` emits the DKIM TXT value (``v=DKIM1; k=rsa; p=…``, unquoted) as ``dkim_txt``,
which ``ensure_dns_records`` on the DNS nodes turns into the ``mail._domainkey`` record.

Ownership (handlers/ownership.py): a mail domain is the service's when its user carries the
service's owner mark; a mailbox on someone else's mail domain (vanity's on the provider's
shared user) when its aliases hold the service's mark alone. ``ensure_mailbox`` adds that alias
right after making the mailbox (Hestia needs the mailbox first) and, when it cannot, deletes the
mailbox it has just made, so a retry finds either a marked mailbox or none. Only a crash or a
lost connection between the two commands leaves an unmarked mailbox: the retry then refuses it
like any other, and staff mark it by hand (``v-add-mail-account-alias``) or delete it.
"""

from __future__ import annotations

import contextlib
import re
from typing import Any

from handlers.hestia_command import NodeError, PermanentNodeError, TransientNodeError
from handlers.ownership import (
    mailbox_mark,
    mailbox_marks,
    our_user,
    owner_param,
    raise_conflict,
    require_ours,
)
from handlers.step import (
    NodeDriver,
    StepLog,
    StepOutcome,
    StepParamsError,
    apply,
    domain_name,
    flag,
    listed_domain,
    remove_domain,
    text,
)

DKIM_RECORD = "mail._domainkey"
_QUOTA = re.compile(r"^(?:[0-9]+|unlimited)$")


def _yes(value: bool) -> str:
    return "yes" if value else "no"


def _dkim_size(params: dict[str, Any]) -> str:
    size = params.get("dkim_size", 2048)
    if isinstance(size, bool) or not isinstance(size, int) or not 1024 <= size <= 4096:
        raise StepParamsError("param 'dkim_size' must be a number of bits from 1024 to 4096")
    return str(size)


async def ensure_mail_domain(
    driver: NodeDriver, params: dict[str, Any], inputs: dict[str, Any], log: StepLog
) -> StepOutcome:
    """The mail domain ``domain`` held by ``user``.

    params: ``user``, ``domain``, ``antispam`` (default true), ``antivirus`` (default true),
    ``dkim`` (default true), ``dkim_size`` (bits, default 2048), ``owner`` (the user must
    carry its mark). Another user's domain → permanent conflict. An existing domain is left
    as it is (``ensure_dkim`` adds a missing DKIM key). outputs: none.
    """
    user, domain = text(params, "user"), domain_name(params)
    options = [_yes(flag(params, name, True)) for name in ("antispam", "antivirus", "dkim")]
    argv = ["v-add-mail-domain", user, domain, *options, _dkim_size(params)]
    await our_user(driver, user, owner_param(params))
    if await listed_domain(driver, "mail", user, domain) is not None:
        log.note(f"mail domain {domain}: present for {user}")
        return StepOutcome(False)
    changed = await apply(driver, log, argv, also_ok=(4,)) == 0
    if not changed:
        await raise_conflict(driver, log, "mail", domain, user)
    if await listed_domain(driver, "mail", user, domain) is None:
        raise TransientNodeError(f"{driver.server_id}: mail domain {domain} is still absent")
    return StepOutcome(changed)


async def ensure_dkim(
    driver: NodeDriver, params: dict[str, Any], inputs: dict[str, Any], log: StepLog
) -> StepOutcome:
    """DKIM signing for the mail domain, and its public record.

    params: ``user``, ``domain``, ``dkim_size`` (bits, default 2048; used only when a key is
    made), ``owner`` (the user must carry its mark). outputs: ``dkim_txt`` (the TXT value,
    unquoted: ``v=DKIM1; k=rsa; p=…``) and ``dkim_record`` (``mail._domainkey``).
    """
    user, domain = text(params, "user"), domain_name(params)
    await our_user(driver, user, owner_param(params))
    conf = await listed_domain(driver, "mail", user, domain)
    if conf is None:
        raise PermanentNodeError(f"{driver.server_id}: mail domain {domain} of {user} is absent")
    changed = False
    if conf.get("DKIM") == "yes":
        log.note(f"mail domain {domain}: DKIM already on")
    else:
        argv = ["v-add-mail-domain-dkim", user, domain, _dkim_size(params)]
        changed = await apply(driver, log, argv, also_ok=(4,)) == 0
    listed = await driver.list_json(["v-list-mail-domain-dkim-dns", user, domain])
    value = str((listed or {}).get(DKIM_RECORD, {}).get("TXT", ""))
    # Hestia prints the value inside single quotes: 'v=DKIM1; k=rsa; p=…'.
    value = value.strip().strip("'\"")
    if "p=" not in value or "NOT-ACTIVATED" in value:
        raise TransientNodeError(f"{driver.server_id}: {domain} has no DKIM public key yet")
    return StepOutcome(changed, {"dkim_txt": value, "dkim_record": DKIM_RECORD})


async def _accounts(driver: NodeDriver, user: str, domain: str) -> dict[str, Any]:
    found = await driver.probe_json(["v-list-mail-accounts", user, domain])
    if found is None:
        raise PermanentNodeError(f"{driver.server_id}: mail domain {domain} of {user} is absent")
    return dict(found)


async def ensure_mailbox(
    driver: NodeDriver, params: dict[str, Any], inputs: dict[str, Any], log: StepLog
) -> StepOutcome:
    """This service's mailbox ``account@domain`` in ``user``'s mail domain (e.g. the provider's
    shared one), marked with the alias ``hostwright.owner.<owner>``.

    params: ``user``, ``domain``, ``account`` (the local part), ``password``, ``owner`` (the
    service id), ``quota`` (optional, MB or ``unlimited``; used when the mailbox is made). An
    existing mailbox with this service's mark alone keeps its password; one without it, or
    with another service's → permanent conflict, nothing changed. outputs: ``address``.
    """
    user, domain = text(params, "user"), domain_name(params)
    account, password = text(params, "account").lower(), text(params, "password")
    mark = mailbox_mark(owner_param(params))
    quota = params.get("quota")
    if quota is not None and not _QUOTA.fullmatch(str(quota)):
        raise StepParamsError("param 'quota' must be a number of MB or 'unlimited'")
    address = {"address": f"{account}@{domain}"}
    what = f"mailbox {account}@{domain}"
    accounts = await _accounts(driver, user, domain)
    if account in accounts:
        require_ours(driver, what, mailbox_marks(accounts[account]), mark)
        log.note(f"{what}: present, with its owner mark")
        return StepOutcome(False, address)
    argv = ["v-add-mail-account", user, domain, account, password]
    argv += [str(quota)] if quota is not None else []
    if await apply(driver, log, argv, also_ok=(4,)) == 4:  # made meanwhile, or an alias
        accounts = await _accounts(driver, user, domain)
        if account not in accounts:
            raise PermanentNodeError(
                f"conflict: {account}@{domain} on {driver.server_id} is an alias of another "
                "mailbox; not adopted"
            )
        require_ours(driver, what, mailbox_marks(accounts[account]), mark)
        return StepOutcome(False, address)
    try:
        await apply(driver, log, ["v-add-mail-account-alias", user, domain, account, mark])
    except NodeError:
        # unmarked, no retry could tell it from someone else's: take back what we just made
        with contextlib.suppress(NodeError):
            await apply(driver, log, ["v-delete-mail-account", user, domain, account])
        raise
    conf = (await _accounts(driver, user, domain)).get(account)
    if conf is None or mark not in mailbox_marks(conf):
        raise TransientNodeError(f"{driver.server_id}: {what} is still absent or unmarked")
    return StepOutcome(True, address)


async def remove_mailbox(
    driver: NodeDriver, params: dict[str, Any], inputs: dict[str, Any], log: StepLog
) -> StepOutcome:
    """No mailbox ``account@domain`` of this service in ``user``'s mail domain; nothing else
    is touched.

    params: ``user``, ``domain``, ``account``, ``owner``. A mailbox without this service's
    mark alone is not its own → permanent "refused", left as it is. Absent (or its domain
    absent) → unchanged.
    """
    user, domain = text(params, "user"), domain_name(params)
    account, mark = text(params, "account").lower(), mailbox_mark(owner_param(params))
    found = await driver.probe_json(["v-list-mail-accounts", user, domain])
    if found is None or account not in found:
        log.note(f"mailbox {account}@{domain}: already absent")
        return StepOutcome(False)
    what = f"mailbox {account}@{domain}"
    require_ours(driver, what, mailbox_marks(found[account]), mark, removal=True)
    argv = ["v-delete-mail-account", user, domain, account]
    changed = await apply(driver, log, argv, also_ok=(3,)) == 0
    if account in (await driver.probe_json(["v-list-mail-accounts", user, domain]) or {}):
        raise TransientNodeError(f"{driver.server_id}: mailbox {account}@{domain} is still there")
    return StepOutcome(changed)


async def remove_mail_domain(
    driver: NodeDriver, params: dict[str, Any], inputs: dict[str, Any], log: StepLog
) -> StepOutcome:
    """No mail domain ``domain`` for ``user`` (its mailboxes go with it).

    params: ``user``, ``domain``, ``owner`` (a user without its mark → permanent "refused",
    left as it is). Absent → unchanged.
    """
    user, domain = text(params, "user"), domain_name(params)
    await our_user(driver, user, owner_param(params), removal=True)
    return await remove_domain(
        driver,
        log,
        f"mail domain {domain}",
        user,
        lambda: listed_domain(driver, "mail", user, domain),
        ["v-delete-mail-domain", user, domain],
    )
