"""Step actions for Hestia packages and users: ``ensure_package``, ``ensure_user``, ``remove_user``.

A user is "ours" when its name is the owner mark of the service (handlers/ownership.py), written
by ``v-add-user`` itself; another's, or one with no mark, is never adopted, changed or deleted.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from typing import Any

from domain.hosting_plan import LIMIT_KEYS, PACKAGE_DEFAULTS, UNLIMITED
from handlers.hestia_command import TransientNodeError
from handlers.ownership import our_user, owner_param, user_mark
from handlers.step import (
    NodeDriver,
    StepLog,
    StepOutcome,
    StepParamsError,
    apply,
    text,
)

# Hestia *sources* a package file as shell: only plain words may go into it.
_PACKAGE_VALUE = re.compile(r"^[A-Za-z0-9._,/-]*$")
_PACKAGE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


def package_definition(quotas: object) -> dict[str, str]:
    """The package's full ``KEY -> value`` from the plan's quotas (Hestia key names).

    A quota value is an int, a string, ``None`` (unlimited), or for ``NS`` a list of names.
    """
    if not isinstance(quotas, dict):
        raise StepParamsError("param 'quotas' must be an object of Hestia package keys")
    definition = dict(PACKAGE_DEFAULTS)
    for key, raw in quotas.items():
        if key not in PACKAGE_DEFAULTS:
            raise StepParamsError(f"quota {key!r} is not a Hestia package key")
        if raw is None:
            value = UNLIMITED
        elif isinstance(raw, bool):
            raise StepParamsError(f"quota {key!r} must be a number, a word or null")
        elif isinstance(raw, int):
            value = str(raw)
        elif isinstance(raw, list) and key == "NS":
            value = ",".join(str(item) for item in raw)
        elif isinstance(raw, str):
            value = raw
        else:
            raise StepParamsError(f"quota {key!r} must be a number, a word or null")
        if not _PACKAGE_VALUE.fullmatch(value):
            raise StepParamsError(f"quota {key!r} has characters a package file cannot hold")
        definition[key] = value
    return definition


def _drift(definition: dict[str, str], listed: dict[str, Any]) -> list[str]:
    """Keys whose listed value differs; keys Hestia does not list cannot be compared."""
    drifted = []
    for key, want in definition.items():
        if key not in listed:
            continue
        have = str(listed[key])
        if key == "SHELL":
            have, want = have.rsplit("/", 1)[-1], want.rsplit("/", 1)[-1]
        if have != want:
            drifted.append(key)
    return drifted


async def ensure_package(
    driver: NodeDriver, params: dict[str, Any], inputs: dict[str, Any], log: StepLog
) -> StepOutcome:
    """A Hestia package with exactly the plan's quotas.

    params: ``package`` (name), ``quotas`` (``{HESTIA_KEY: int | str | None}``, e.g.
    ``{"WEB_DOMAINS": 1, "DISK_QUOTA": 1024, "BANDWIDTH": None, "NS": ["ns1.x", "ns2.x"]}``;
    keys left out take Hestia's defaults). Uploads ``/tmp/hostwright-<package>-<hash>.pkg``
    over SFTP and runs ``v-add-user-package FILE PACKAGE [yes]`` only when the package is
    absent or differs. outputs: none.
    """
    package = text(params, "package")
    if not _PACKAGE_NAME.fullmatch(package):
        raise StepParamsError(f"package name {package!r} is not valid for Hestia")
    definition = package_definition(params.get("quotas", {}))
    listed = await driver.probe_json(["v-list-user-package", package])
    if listed is not None:
        drifted = _drift(definition, listed.get(package, {}))
        if not drifted:
            log.note(f"package {package}: present with the plan's quotas")
            return StepOutcome(changed=False)
        log.note(f"package {package}: differs in {', '.join(drifted)}")
    else:
        log.note(f"package {package}: absent")
    body = "".join(f"{key}='{value}'\n" for key, value in definition.items()).encode()
    # a name of its own per upload: two steps writing the same package at once must not
    # remove each other's file before Hestia has read it
    unique = f"{hashlib.sha256(body).hexdigest()[:12]}-{secrets.token_hex(4)}"
    path = f"/tmp/hostwright-{package}-{unique}.pkg"  # noqa: S108 — v-add-user-package reads it there
    await driver.put_file(path, body)
    log.note(f"uploaded {path}")
    try:
        argv = ["v-add-user-package", path, package, *(["yes"] if listed is not None else [])]
        if await apply(driver, log, argv, also_ok=(4,)) == 4:
            # Another task added it between our probe and our add: make it ours.
            await apply(driver, log, ["v-add-user-package", path, package, "yes"])
    finally:
        await driver.remove_file(path)
    after = await driver.probe_json(["v-list-user-package", package])
    if after is None or _drift(definition, after.get(package, {})):
        raise TransientNodeError(f"{driver.server_id}: package {package} did not take the quotas")
    return StepOutcome(changed=True)


async def ensure_user(
    driver: NodeDriver, params: dict[str, Any], inputs: dict[str, Any], log: StepLog
) -> StepOutcome:
    """A Hestia user of this service on the given package.

    params: ``user``, ``password``, ``email`` (the contact), ``owner`` (the service id: the
    user is made with the name ``hostwright service <owner>``, and an existing user without
    that name is someone else's → permanent conflict, nothing changed), ``package`` (default
    ``default``), ``quotas`` (optional: the package is first made to hold them, as
    ``ensure_package`` does). An existing user of ours keeps its password; its package is set
    with ``v-change-user-package`` when it differs or its quotas drifted. outputs: none.
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
        added = await apply(driver, log, argv, also_ok=(4,)) == 0
        conf = await our_user(driver, user, owner)  # exit 4: made meanwhile, by whom?
        if conf is None:
            raise TransientNodeError(f"{driver.server_id}: user {user} is still absent")
    moved = False
    if not added and await _package_drifted(driver, user, conf, package, log):
        await apply(driver, log, ["v-change-user-package", user, package])
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
