"""Step actions for Hestia users: ``ensure_user``, ``remove_user`` (packages: package_steps.py).

A user is "ours" when its contact e-mail is the one the planner gives (handlers/ownership.py);
another's is never adopted or deleted.
"""

from __future__ import annotations

from typing import Any

from domain.hosting_plan import LIMIT_KEYS
from handlers.hestia_command import TransientNodeError
from handlers.ownership import require_our_user
from handlers.package_steps import ensure_package, on_package
from handlers.step import (
    NodeDriver,
    StepLog,
    StepOutcome,
    apply,
    optional_text,
    text,
)


async def ensure_user(
    driver: NodeDriver, params: dict[str, Any], inputs: dict[str, Any], log: StepLog
) -> StepOutcome:
    """A Hestia user on the given package.

    params: ``user``, ``password``, ``email`` (the contact; an existing user with another
    contact is someone else's → permanent conflict), ``package`` (default ``default``),
    ``name`` (optional full name), ``quotas`` (optional: the package is first made to hold
    them, as ``ensure_package`` does). An existing user of ours keeps its password; its
    package is set with ``v-change-user-package`` when it differs or its quotas drifted.
    outputs: none.
    """
    user, email = text(params, "user"), text(params, "email")
    password = text(params, "password")
    package = text(params, "package", "default")
    name = optional_text(params, "name")
    package_changed = False
    if "quotas" in params:
        package_params = {"package": package, "quotas": params["quotas"]}
        package_changed = (await ensure_package(driver, package_params, inputs, log)).changed
    found = await driver.probe_json(["v-list-user", user])
    added = False
    if found is None:
        argv = ["v-add-user", user, password, email, package, *([name] if name else [])]
        added = await on_package(driver, log, argv, package) == 0
        found = await driver.probe_json(["v-list-user", user])
        if found is None:
            raise TransientNodeError(f"{driver.server_id}: user {user} is still absent")
    conf = found.get(user, {})
    require_our_user(driver, user, conf, email, refusal="conflict")
    moved = False
    if not added and await _package_drifted(driver, user, conf, package, log):
        await on_package(driver, log, ["v-change-user-package", user, package], package)
        moved = True
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
    """No Hestia user ``user`` (with everything it holds).

    params: ``user``, ``email`` (its contact: a user with another contact is not ours and is
    never deleted → permanent error). Already absent → unchanged. outputs: none.
    """
    user, email = text(params, "user"), text(params, "email")
    found = await driver.probe_json(["v-list-user", user])
    if found is None:
        log.note(f"user {user}: already absent")
        return StepOutcome(changed=False)
    require_our_user(driver, user, found.get(user, {}), email, refusal="refused")
    changed = await apply(driver, log, ["v-delete-user", user], also_ok=(3,)) == 0
    if await driver.probe_json(["v-list-user", user]) is not None:
        raise TransientNodeError(f"{driver.server_id}: user {user} is still present")
    return StepOutcome(changed=changed)
