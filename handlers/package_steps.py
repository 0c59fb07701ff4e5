"""Step actions for Hestia packages: ``ensure_package``, ``remove_unused_packages``.

A package is never rewritten once it exists: its name says its content
(domain/hestia_package.py), so a package of that name with other limits is a conflict, not
something to correct — correcting it would change the limits of every user on it.
``remove_unused_packages`` removes only packages of hostwright's name form that no user on the
node uses, and puts back any user that joined one while it was being removed.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from collections.abc import Sequence
from typing import Any

from domain.errors import InvalidInput
from domain.hestia_package import is_content_package, package_content
from domain.hosting_plan import PACKAGE_DEFAULTS
from handlers.hestia_command import PermanentNodeError, TransientNodeError
from handlers.ownership import user_marks
from handlers.step import NodeDriver, StepLog, StepOutcome, StepParamsError, apply, text

_PACKAGE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
DEFAULT_PACKAGE = "default"  # where Hestia moves the users of a package it deletes


def package_definition(quotas: object) -> dict[str, str]:
    """The package's full ``KEY -> value`` from the plan's quotas (Hestia key names): the
    domain's ``package_content``, the very content the package's name is the digest of."""
    if not isinstance(quotas, dict):
        raise StepParamsError("param 'quotas' must be an object of Hestia package keys")
    try:
        return package_content(quotas)
    except InvalidInput as exc:
        raise StepParamsError(str(exc)) from None


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


def _conflict(driver: NodeDriver, package: str, drifted: list[str]) -> PermanentNodeError:
    return PermanentNodeError(
        f"conflict: package {package} on {driver.server_id} holds other limits "
        f"({', '.join(drifted)}); a package is never rewritten, as that would change the "
        "limits of every user on it: rename or remove it by hand"
    )


async def ensure_package(
    driver: NodeDriver, params: dict[str, Any], inputs: dict[str, Any], log: StepLog
) -> StepOutcome:
    """A Hestia package with exactly the plan's quotas, made once and never rewritten.

    params: ``package`` (name; the planner names it after its content), ``quotas``
    (``{HESTIA_KEY: int | str | None}``, e.g. ``{"WEB_DOMAINS": 1, "DISK_QUOTA": 1024,
    "BANDWIDTH": None, "NS": ["ns1.x", "ns2.x"]}``; keys left out take Hestia's defaults).
    Present with these quotas → unchanged; present with others → permanent conflict, never
    rewritten; absent → uploads ``/tmp/hostwright-<package>-<hash>.pkg`` over SFTP and runs
    ``v-add-user-package FILE PACKAGE`` (exit 4, made meanwhile by another task, is fine when
    it holds the same quotas). outputs: none.
    """
    package = text(params, "package")
    if not _PACKAGE_NAME.fullmatch(package):
        raise StepParamsError(f"package name {package!r} is not valid for Hestia")
    definition = package_definition(params.get("quotas", {}))
    listed = await driver.probe_json(["v-list-user-package", package])
    if listed is None:
        log.note(f"package {package}: absent")
        added = await add_package(driver, log, package, definition) == 0
        listed = await driver.probe_json(["v-list-user-package", package])
        if listed is None:
            raise TransientNodeError(f"{driver.server_id}: package {package} is still absent")
    else:
        added = False
    drifted = _drift(definition, listed.get(package, {}))
    if drifted:
        log.note(f"package {package}: differs in {', '.join(drifted)}; left as it is")
        raise _conflict(driver, package, drifted)
    if not added:
        log.note(f"package {package}: present with the plan's quotas")
    return StepOutcome(changed=added)


async def add_package(
    driver: NodeDriver, log: StepLog, package: str, definition: dict[str, str]
) -> int:
    """Uploads the package file and runs ``v-add-user-package``; 0, or 4 if it exists."""
    body = "".join(f"{key}='{value}'\n" for key, value in definition.items()).encode()
    # a name of its own per upload: two steps writing the same package at once must not
    # remove each other's file before Hestia has read it
    unique = f"{hashlib.sha256(body).hexdigest()[:12]}-{secrets.token_hex(4)}"
    path = f"/tmp/hostwright-{package}-{unique}.pkg"  # noqa: S108 — v-add-user-package reads it there
    await driver.put_file(path, body)
    log.note(f"uploaded {path}")
    try:
        return await apply(driver, log, ["v-add-user-package", path, package], also_ok=(4,))
    finally:
        await driver.remove_file(path)


async def on_package(driver: NodeDriver, log: StepLog, argv: Sequence[str], package: str) -> int:
    """Runs ``v-add-user`` / ``v-change-user-package`` onto ``package``; the package gone
    meanwhile (exit 3: removed as unused by another service's run) is a transient error, as the
    retry makes it again first. Its exit status otherwise (0, or 4 for an existing user)."""
    status = await apply(driver, log, argv, also_ok=(3, 4))
    if status == 3:
        raise TransientNodeError(
            f"{driver.server_id}: package {package} went away before {argv[0]}; retry re-makes it"
        )
    return status


async def remove_unused_packages(
    driver: NodeDriver, params: dict[str, Any], inputs: dict[str, Any], log: StepLog
) -> StepOutcome:
    """No package of hostwright's name form (``hw-<digest>-…``) that no user on the node uses.

    params: none. ``default`` and packages an admin made are never touched. A package is kept
    while any user's package name starts with its name: Hestia's ``v-delete-user-package``
    moves every such user to ``default``. A user of hostwright's (one with an owner mark) that
    joined a package between the check and the removal (another service's deploy or change
    plan) is put back: the package is made again with the content it had, and the user moved
    onto it; a user without a mark (an admin's) is never moved. outputs: none.
    """
    packages = await driver.list_json(["v-list-user-packages"]) or {}
    users = await driver.list_json(["v-list-users"]) or {}
    changed = False
    for package in sorted(name for name in packages if is_content_package(name)):
        removed, users = await _remove_if_unused(driver, log, package, users)
        changed = removed or changed
    return StepOutcome(changed)


async def remove_if_unused(driver: NodeDriver, log: StepLog, package: str) -> bool:
    """``remove_unused_packages`` for the one package a user just left: removed (True) when
    it is of hostwright's name form and no user on the node uses it, else left."""
    if not is_content_package(package):
        return False
    users = await driver.list_json(["v-list-users"]) or {}
    return (await _remove_if_unused(driver, log, package, users))[0]


async def _remove_if_unused(
    driver: NodeDriver, log: StepLog, package: str, users: dict[str, Any]
) -> tuple[bool, dict[str, Any]]:
    """Removes ``package`` unless a user in ``users`` uses it, putting back any user that
    joined it meanwhile. Whether it was removed, and the users as listed after."""
    using = sorted(u for u, conf in users.items() if _on(conf, package))
    if using:
        log.note(f"package {package}: kept, used by {', '.join(using)}")
        return False, users
    # the one listing that holds every key (the list of all packages leaves some out)
    listed = await driver.probe_json(["v-list-user-package", package])
    if listed is None:
        return False, users
    removed = await apply(driver, log, ["v-delete-user-package", package], also_ok=(3,)) == 0
    after = await driver.list_json(["v-list-users"]) or {}
    await _put_back(driver, log, package, listed.get(package, {}), users, after)
    return removed, after


def _on(conf: dict[str, Any], package: str) -> bool:
    return str(conf.get("PACKAGE", "")).startswith(package)


async def _put_back(
    driver: NodeDriver,
    log: StepLog,
    package: str,
    listed: dict[str, Any],
    before: dict[str, Any],
    after: dict[str, Any],
) -> None:
    """Users that joined ``package`` while it was being removed: left on it
    (joined between Hestia's check and its ``rm``), or moved to ``default`` by Hestia — a user
    on ``default`` now that was not there in ``before`` (new, or moved onto the package from
    another one meanwhile). Remakes the package as it was and puts them on it.

    Of the users on ``default``, only one carrying a hostwright owner mark is put back:
    hostwright never puts a user on ``default``, so a marked user there was moved by the
    removal; an unmarked one (an admin's, made there meanwhile) is left where it is."""
    joined = sorted(
        user
        for user, conf in after.items()
        if conf.get("PACKAGE") == package
        or (
            conf.get("PACKAGE") == DEFAULT_PACKAGE
            and before.get(user, {}).get("PACKAGE") != DEFAULT_PACKAGE
            and user_marks(conf)
        )
    )
    if not joined:
        log.note(f"package {package}: removed, no user used it")
        return
    log.note(f"package {package}: {', '.join(joined)} joined it while it was removed; put back")
    try:
        definition = package_content(
            {k: str(v) for k, v in listed.items() if k in PACKAGE_DEFAULTS}
        )
    except InvalidInput:
        raise PermanentNodeError(
            f"{driver.server_id}: package {package} cannot be made again"
        ) from None
    await add_package(driver, log, package, definition)
    for user in joined:
        await apply(driver, log, ["v-change-user-package", user, package])
