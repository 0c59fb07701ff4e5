"""Step actions for Hestia users: ``ensure_user``, ``remove_user``, ``change_user_password``
(packages: package_steps.py).

A user is "ours" when its name is the owner mark of the service (handlers/ownership.py), written
by ``v-add-user`` itself; another's, or one with no mark, is never adopted, changed or deleted.
"""

from __future__ import annotations

from typing import Any

from domain.hosting_plan import LIMIT_KEYS
from handlers.hestia_command import PermanentNodeError, TransientNodeError
from handlers.ownership import our_user, owner_param, user_mark
from handlers.package_steps import ensure_package, on_package, remove_if_unused
from handlers.step import (
    NodeDriver,
    StepLog,
    StepOutcome,
    apply,
    text,
)


async def ensure_user(
    driver: NodeDriver, params: dict[str, Any], inputs: dict[str, Any], log: StepLog
) -> StepOutcome:
    """A Hestia user of this service on the given package.

    params: ``user``, ``password``, ``email`` (the contact), ``owner`` (the service id: the
    user is made with the name ``hostwright service <owner>``, and an existing user without
    that name is someone else's → permanent conflict, nothing changed), ``package`` (default
    ``default``), ``quotas`` (optional: the package is first made to hold them, as
    ``ensure_package`` does). An existing user of ours keeps its password; its package is set
    with ``v-change-user-package`` when it differs or its quotas drifted, and the package it
    left, when of hostwright's ``hw-…`` form and used by no one else on the node, is removed
    right then (as ``remove_unused_packages`` does: a deploy or verify & repair that moves the
    user plans no removal step). outputs: none.
    """
    user, email = text(params, "user"), text(params, "email")
    owner = owner_param(params)
    password = text(params, "password")
    package = text(params, "package", "default")
    conf = await our_user(driver, user, owner)
    package_changed = False
    if "quotas" in params:
        package_params = {"package": package, "quotas": params["quotas"]}
        package_changed = (await ensure_package(driver, package_params, inputs, log)).changed
    added = False
    if conf is None:
        argv = ["v-add-user", user, password, email, package, user_mark(owner)]
        added = await on_package(driver, log, argv, package) == 0
        conf = await our_user(driver, user, owner)  # exit 4: made meanwhile, by whom?
        if conf is None:
            raise TransientNodeError(f"{driver.server_id}: user {user} is still absent")
    moved = False
    if not added and await _package_drifted(driver, user, conf, package, log):
        await on_package(driver, log, ["v-change-user-package", user, package], package)
        moved = True
        left = str(conf.get("PACKAGE", ""))
        if left != package:
            # the package it left goes now when no one uses it, not at the next change plan
            await remove_if_unused(driver, log, left)
    if not added and not moved:
        log.note(f"user {user}: present on package {package}")
    return StepOutcome(changed=package_changed or added or moved)


async def _package_drifted(
    driver: NodeDriver, user: str, conf: dict[str, Any], package: str, log: StepLog
) -> bool:
    if conf.get("PACKAGE") != package:
        log.note(f"user {user}: on package {conf.get('PACKAGE')}, wants {package}")
        return True
    listed = await driver.probe_json(["v-list-user-package", package])
    limits = (listed or {}).get(package, {})
    drifted = [k for k in LIMIT_KEYS if k in limits and k in conf and limits[k] != conf[k]]
    if drifted:
        log.note(f"user {user}: quotas differ from package {package} in {', '.join(drifted)}")
    return bool(drifted)


async def remove_user(
    driver: NodeDriver, params: dict[str, Any], inputs: dict[str, Any], log: StepLog
) -> StepOutcome:
    """No Hestia user ``user`` of this service (with everything it holds).

    params: ``user``, ``owner`` (the service id: a user without its mark is not ours and is
    never deleted → permanent "refused", so a forced terminate lists it as left over).
    Already absent → unchanged. outputs: none.
    """
    user, owner = text(params, "user"), owner_param(params)
    if await our_user(driver, user, owner, removal=True) is None:
        log.note(f"user {user}: already absent")
        return StepOutcome(changed=False)
    changed = await apply(driver, log, ["v-delete-user", user], also_ok=(3,)) == 0
    if await driver.probe_json(["v-list-user", user]) is not None:
        raise TransientNodeError(f"{driver.server_id}: user {user} is still present")
    return StepOutcome(changed=changed)


async def change_user_password(
    driver: NodeDriver, params: dict[str, Any], inputs: dict[str, Any], log: StepLog
) -> StepOutcome:
    """Hestia user ``user`` of this service takes the password ``password``
    (``v-change-user-password USER PASSWORD``; the line is quoted by ``command_line`` and the
    password masked wherever the command is shown).

    params: ``user``, ``password`` (unsealed from ``password_sealed`` just before the step
    runs), ``owner``. Hestia keeps only a hash, so there is nothing to compare with: the
    command runs every time, and running it again leaves the same password. Absent, or not
    ours → permanent error, nothing changed. Suspended → permanent error: Hestia refuses to
    change a suspended user's password (exit 5), so it waits for an unsuspend. outputs: none.
    """
    user, owner = text(params, "user"), owner_param(params)
    password = text(params, "password")
    conf = await our_user(driver, user, owner)
    if conf is None:
        raise PermanentNodeError(
            f"{driver.server_id}: user {user} does not exist; there is no password to change"
        )
    if conf.get("SUSPENDED") == "yes":
        raise PermanentNodeError(
            f"{driver.server_id}: user {user} is suspended; Hestia changes no suspended "
            "user's password: unsuspend the service, then change it again"
        )
    await apply(driver, log, ["v-change-user-password", user, password])
    log.note(f"user {user}: password changed")
    return StepOutcome(changed=True)
