"""Step actions for web domains: ``ensure_web_domain``, ``ensure_php``, ``remove_web_domain``.

A web domain is the service's when the user holding it carries the service's owner mark
(param ``owner``; handlers/ownership.py): each step checks the user before it acts.
"""

from __future__ import annotations

from typing import Any

from handlers.hestia_command import PermanentNodeError, TransientNodeError
from handlers.ownership import our_user, owner_param, raise_conflict
from handlers.step import (
    NodeDriver,
    StepLog,
    StepOutcome,
    StepParamsError,
    apply,
    domain_name,
    listed_domain,
    optional_text,
    remove_domain,
    text,
)


async def ensure_web_domain(
    driver: NodeDriver, params: dict[str, Any], inputs: dict[str, Any], log: StepLog
) -> StepOutcome:
    """The web domain ``domain`` held by ``user``.

    params: ``user``, ``domain``, ``ip`` (optional: the node's IP Hestia should serve it on;
    Hestia picks the user's default when left out), ``aliases`` (optional, comma-separated, or
    ``none``), ``owner`` (the user must carry its mark). A domain another user holds →
    permanent "conflict: <domain> is owned by <user> on <server>". outputs: ``document_root``
    (where ACME challenge files go).
    """
    user, domain = text(params, "user"), domain_name(params)
    ip, aliases = optional_text(params, "ip"), optional_text(params, "aliases")
    if aliases is not None and ip is None:
        raise StepParamsError("param 'aliases' needs 'ip' (Hestia's arguments are positional)")
    await our_user(driver, user, owner_param(params))
    conf = await listed_domain(driver, "web", user, domain)
    changed = False
    if conf is None:
        argv = ["v-add-web-domain", user, domain, *([ip] if ip else [])]
        if aliases is not None:
            # RESTART sits between IP and ALIASES; empty keeps Hestia's default.
            argv += ["", aliases]
        if await apply(driver, log, argv, also_ok=(4,)) == 4:
            await raise_conflict(driver, log, "web", domain, user)
        else:
            changed = True
        conf = await listed_domain(driver, "web", user, domain)
        if conf is None:
            raise TransientNodeError(f"{driver.server_id}: web domain {domain} is still absent")
    else:
        log.note(f"web domain {domain}: present for {user}")
    return StepOutcome(changed, {"document_root": str(conf.get("DOCUMENT_ROOT", ""))})


def backend_template(params: dict[str, Any]) -> str:
    """``backend`` (``PHP-8_2``) or ``php_version`` (``8.2``) → the backend template name."""
    backend = optional_text(params, "backend")
    if backend is not None:
        return backend
    version = text(params, "php_version")
    major, dot, minor = version.partition(".")
    if not (dot and major.isdigit() and minor.isdigit()):
        raise StepParamsError(f"php_version {version!r} must look like '8.2'")
    return f"PHP-{major}_{minor}"


async def ensure_php(
    driver: NodeDriver, params: dict[str, Any], inputs: dict[str, Any], log: StepLog
) -> StepOutcome:
    """The web domain runs the wanted PHP backend template.

    params: ``user``, ``domain``, and ``backend`` (a Hestia template, e.g. ``PHP-8_2``) or
    ``php_version`` (``8.2``), ``owner`` (the user must carry its mark). Changes it only when
    different. outputs: ``backend``.
    """
    user, domain = text(params, "user"), domain_name(params)
    backend = backend_template(params)
    await our_user(driver, user, owner_param(params))
    conf = await listed_domain(driver, "web", user, domain)
    if conf is None:
        raise PermanentNodeError(f"{driver.server_id}: web domain {domain} of {user} is absent")
    if conf.get("BACKEND") == backend:
        log.note(f"web domain {domain}: backend already {backend}")
        return StepOutcome(False, {"backend": backend})
    log.note(f"web domain {domain}: backend {conf.get('BACKEND')} -> {backend}")
    await apply(driver, log, ["v-change-web-domain-backend-tpl", user, domain, backend])
    after = await listed_domain(driver, "web", user, domain)
    if after is None or after.get("BACKEND") != backend:
        raise TransientNodeError(f"{driver.server_id}: {domain} did not take backend {backend}")
    return StepOutcome(True, {"backend": backend})


async def remove_web_domain(
    driver: NodeDriver, params: dict[str, Any], inputs: dict[str, Any], log: StepLog
) -> StepOutcome:
    """No web domain ``domain`` for ``user`` (another user's domain is never touched).

    params: ``user``, ``domain``, ``owner`` (a user without its mark → permanent "refused",
    left as it is). Absent (or the user absent) → unchanged. outputs: none.
    """
    user, domain = text(params, "user"), domain_name(params)
    await our_user(driver, user, owner_param(params), removal=True)
    return await remove_domain(
        driver,
        log,
        f"web domain {domain}",
        user,
        lambda: listed_domain(driver, "web", user, domain),
        ["v-delete-web-domain", user, domain],
    )
