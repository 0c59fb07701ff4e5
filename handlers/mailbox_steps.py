"""Step actions for one mailbox that stays: ``suspend_mailbox``, ``unsuspend_mailbox``,
``ensure_mailbox_quota`` and ``change_mailbox_password`` (vanity's ``<label>@<provider
domain>`` on the provider's mail user).

Each probes the mailbox with ``v-list-mail-account … json`` (exit 3 when the user, the mail
domain or the mailbox is missing: a permanent error naming it), acts only when needed, and
checks again. Hestia refuses to change a mailbox while it, its mail domain or its user is
suspended (exit 5): a suspend counts that as done once the mailbox shows suspended; an
unsuspend cannot get past a suspended domain or user (permanent error); a quota change on a
suspended mailbox waits for the unsuspend, which carries the quota (``deferred`` output).
Each acts only on a mailbox whose aliases hold the service's owner mark alone (params
``owner``; handlers/ownership.py): any other is a permanent conflict, and nothing is changed.
"""

from __future__ import annotations

import re
from typing import Any

from handlers.hestia_command import PermanentNodeError, TransientNodeError
from handlers.ownership import mailbox_mark, mailbox_marks, owner_param, require_ours
from handlers.step import (
    NodeDriver,
    StepLog,
    StepOutcome,
    StepParamsError,
    apply,
    domain_name,
    text,
)

_QUOTA = re.compile(r"^(?:[0-9]{1,9}|unlimited)$")


def _where(params: dict[str, Any]) -> tuple[str, str, str, str]:
    """user, domain, account, and the owner mark the mailbox must carry."""
    account = text(params, "account").lower()
    return text(params, "user"), domain_name(params), account, mailbox_mark(owner_param(params))


def quota_value(raw: object) -> str:
    """A quota as Hestia stores it: MB as digits, or ``unlimited`` (which 0 also means)."""
    if isinstance(raw, bool) or not isinstance(raw, int | str) or not _QUOTA.fullmatch(str(raw)):
        raise StepParamsError("param 'quota' must be a number of MB or 'unlimited'")
    value = str(raw)
    return "unlimited" if value == "unlimited" or int(value) == 0 else str(int(value))


async def _mailbox(
    driver: NodeDriver, where: tuple[str, str, str, str], verb: str
) -> dict[str, Any]:
    user, domain, account, mark = where
    found = await driver.probe_json(["v-list-mail-account", user, domain, account])
    if found is None:
        raise PermanentNodeError(
            f"{driver.server_id}: mailbox {account}@{domain} of {user} does not exist "
            f"(or its mail domain or user); cannot {verb} it"
        )
    conf = dict(found.get(account, {}))
    require_ours(driver, f"mailbox {account}@{domain}", mailbox_marks(conf), mark)
    return conf


async def suspend_mailbox(
    driver: NodeDriver, params: dict[str, Any], inputs: dict[str, Any], log: StepLog
) -> StepOutcome:
    """The mailbox ``account@domain`` of ``user`` suspended (``v-suspend-mail-account``).

    params: ``user``, ``domain``, ``account``, ``owner``. Nothing else of the domain is
    touched. Already suspended → unchanged; absent → permanent error. outputs: none.
    """
    where = _where(params)
    user, domain, account, _ = where
    if (await _mailbox(driver, where, "suspend")).get("SUSPENDED") == "yes":
        log.note(f"mailbox {account}@{domain}: already suspended")
        return StepOutcome(False)
    argv = ["v-suspend-mail-account", user, domain, account]
    changed = await apply(driver, log, argv, also_ok=(5,)) == 0
    if (await _mailbox(driver, where, "suspend")).get("SUSPENDED") != "yes":
        raise TransientNodeError(f"{driver.server_id}: mailbox {account}@{domain} is still open")
    return StepOutcome(changed)


async def unsuspend_mailbox(
    driver: NodeDriver, params: dict[str, Any], inputs: dict[str, Any], log: StepLog
) -> StepOutcome:
    """The mailbox ``account@domain`` of ``user`` open again (``v-unsuspend-mail-account``).

    params: ``user``, ``domain``, ``account``, ``owner``, ``quota`` (optional, MB or
    ``unlimited``: set
    once it is open, for a plan changed while it was suspended). Not suspended → only the
    quota is looked at. Absent, or its mail domain or user suspended → permanent error.
    outputs: none.
    """
    where = _where(params)
    user, domain, account, _ = where
    quota = None if params.get("quota") is None else quota_value(params["quota"])
    conf = await _mailbox(driver, where, "unsuspend")
    changed = False
    if conf.get("SUSPENDED") == "yes":
        argv = ["v-unsuspend-mail-account", user, domain, account]
        if await apply(driver, log, argv, also_ok=(5, 6)) == 5:
            raise PermanentNodeError(
                f"{driver.server_id}: mailbox {account}@{domain} cannot be unsuspended while "
                f"user {user} or its mail domain {domain} is suspended"
            )
        conf = await _mailbox(driver, where, "unsuspend")
        if conf.get("SUSPENDED") == "yes":
            raise TransientNodeError(
                f"{driver.server_id}: mailbox {account}@{domain} is still suspended"
            )
        changed = True
    else:
        log.note(f"mailbox {account}@{domain}: not suspended")
    if quota is not None:
        changed = await _set_quota(driver, log, where, conf, quota) or changed
    return StepOutcome(changed)


async def ensure_mailbox_quota(
    driver: NodeDriver, params: dict[str, Any], inputs: dict[str, Any], log: StepLog
) -> StepOutcome:
    """The mailbox ``account@domain`` of ``user`` has the quota ``quota``.

    params: ``user``, ``domain``, ``account``, ``owner``, ``quota`` (MB, or ``unlimited``; 0 is
    unlimited as in Hestia). A suspended mailbox is left as it is (Hestia refuses the change;
    ``unsuspend_mailbox`` sets the quota). outputs: ``deferred`` (true when it waits for the
    unsuspend).
    """
    where = _where(params)
    _, domain, account, _ = where
    quota = quota_value(params.get("quota"))
    conf = await _mailbox(driver, where, "change the quota of")
    if conf.get("SUSPENDED") == "yes" and _stored(conf) != quota:
        log.note(f"mailbox {account}@{domain}: suspended; quota {quota} waits for the unsuspend")
        return StepOutcome(False, {"deferred": True})
    changed = await _set_quota(driver, log, where, conf, quota)
    return StepOutcome(changed, {"deferred": False})


def _stored(conf: dict[str, Any]) -> str:
    value = str(conf.get("QUOTA") or "unlimited")
    return quota_value(value) if _QUOTA.fullmatch(value) else value


async def _set_quota(
    driver: NodeDriver,
    log: StepLog,
    where: tuple[str, str, str, str],
    conf: dict[str, Any],
    quota: str,
) -> bool:
    user, domain, account, _ = where
    if _stored(conf) == quota:
        log.note(f"mailbox {account}@{domain}: quota {quota}")
        return False
    await apply(driver, log, ["v-change-mail-account-quota", user, domain, account, quota])
    after = await _mailbox(driver, where, "change the quota of")
    if _stored(after) != quota:
        raise TransientNodeError(
            f"{driver.server_id}: mailbox {account}@{domain} still has quota {_stored(after)}"
        )
    return True


async def change_mailbox_password(
    driver: NodeDriver, params: dict[str, Any], inputs: dict[str, Any], log: StepLog
) -> StepOutcome:
    """The mailbox ``account@domain`` of ``user`` takes the password ``password``
    (``v-change-mail-account-password USER DOMAIN ACCOUNT PASSWORD``).

    params: ``user``, ``domain``, ``account``, ``owner``, ``password`` (unsealed just before
    the step runs). Only a hash is kept, so the command runs every time; running it again
    leaves the same password. Absent → permanent error; suspended (the mailbox, its domain or
    its user: Hestia's exit 5) → permanent error, nothing changed. outputs: none.
    """
    where = _where(params)
    user, domain, account, _ = where
    password = text(params, "password")
    if (await _mailbox(driver, where, "change the password of")).get("SUSPENDED") == "yes":
        raise PermanentNodeError(
            f"{driver.server_id}: mailbox {account}@{domain} is suspended; its password "
            "cannot be changed until it is unsuspended"
        )
    await apply(driver, log, ["v-change-mail-account-password", user, domain, account, password])
    log.note(f"mailbox {account}@{domain}: password changed")
    return StepOutcome(True)
