"""What every run plan is made of: steps, the service facts they read, and the chain that
orders them.

Consumes a Service's facts (``ServiceFacts``) and the nodes' addresses; emits ``StepSpec``s
through a ``StepChain``, which refuses a step that depends on one not yet planned and sets a
node up (package, user) once however many roles the node serves for the service. Every step
but the two on packages (``ensure_package``, ``remove_unused_packages``: packages are shared by
content) carries the service id as ``owner``: the handler marks what it makes with it and
acts only on what carries that mark (handlers/ownership.py). The mode modules
(domain/own_domain_plan.py, domain/vanity_plan.py) add their steps through a chain;
domain/deploy_plan.py and domain/lifecycle_plan.py pick the mode per run kind.
"""

from __future__ import annotations

import hashlib
import ipaddress
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from domain.errors import Conflict, InvalidInput
from domain.hestia_package import content_package
from domain.names import validate_username
from domain.service import Service

# the plan field a vanity mailbox's quota comes from (MB; absent or None = as Hestia sets it)
MAILBOX_QUOTA_FIELD = "mailbox_quota_mb"
_QUOTA_EXCLUDED = ("package", "php_version", MAILBOX_QUOTA_FIELD)
_USERNAME_BASE = 12
_NOT_ALNUM = re.compile(r"[^a-z0-9]")


@dataclass(frozen=True)
class StepSpec:
    """One step of a run: ``action`` with ``params`` on ``server_id``, after ``depends_on``."""

    step: str
    role: str
    action: str
    server_id: str
    params: dict[str, Any]
    depends_on: tuple[str, ...] = ()


@dataclass(frozen=True)
class ServiceFacts:
    """What planning reads from a Service aggregate."""

    service_id: str
    mode: str
    domain: str
    username: str | None = None
    label: str | None = None
    plan: Mapping[str, Any] = field(default_factory=dict)
    password_sealed: str | None = field(default=None, repr=False)

    @classmethod
    def from_service(cls, service: Service) -> ServiceFacts:
        return cls(
            service_id=service.service_id,
            mode=service.mode,
            domain=service.domain,
            username=service.username,
            label=service.label,
            plan=dict(service.plan),
            password_sealed=service.password_sealed,
        )

    @property
    def user(self) -> str:
        """The Hestia user the service owns: as ordered, or derived from domain and id."""
        return self.username or derive_username(self.domain, self.service_id)


def sealed_password(service: ServiceFacts) -> str:
    """The service's password, sealed, for a password change; none is a Conflict (a step
    given no password sets a random one of its own, which would lock the customer out)."""
    if not service.password_sealed:
        raise Conflict(f"service {service.service_id} has no password to set")
    return service.password_sealed


def derive_username(domain: str, service_id: str) -> str:
    """A valid Hestia username for a service that was ordered without one.

    The first label's letters and digits (at most 12, prefixed "u" unless a letter starts them)
    then 8 hex digits of a hash of the service id: readable in Hestia's user list, stable across
    runs, and distinct for two services with the same domain.
    """
    base = _NOT_ALNUM.sub("", domain.split(".")[0].lower())[:_USERNAME_BASE]
    if not base[:1].isalpha():
        base = ("u" + base)[:_USERNAME_BASE]
    digest = hashlib.sha256(f"username/{service_id}".encode()).hexdigest()[:8]
    return validate_username(base + digest)


class StepChain:
    """Collects steps in order; sets up each node (package, user) once, however many roles
    the node serves for this service."""

    def __init__(
        self,
        service: ServiceFacts,
        node_ips: Mapping[str, str],
        prefix: str = "",
        *,
        ssl: bool = False,
    ) -> None:
        self.service = service
        self.node_ips = node_ips
        self.prefix = prefix  # put before the keys of node set-up steps ("change_plan.")
        self.ssl = ssl  # automatic SSL is on: a deploy ends with its ssl steps (ssl_plan.py)
        self.steps: list[StepSpec] = []
        self._user_steps: dict[str, str] = {}  # server_id -> key of its ensure_user step
        self._removals: dict[str, tuple[str, list[str]]] = {}  # server_id -> (role, keys)

    def add(
        self,
        step: str,
        role: str,
        action: str,
        server_id: str,
        params: dict[str, Any],
        depends_on: tuple[str, ...] = (),
        *,
        owned: bool = True,
    ) -> str:
        """``owned``: the step acts on the service's own things, so it carries ``owner``."""
        known = {s.step for s in self.steps}
        if step in known or not set(depends_on) <= known:
            raise ValueError(f"step {step} is a duplicate or depends on an unplanned step")
        if owned:
            params = {**params, "owner": self.service.service_id}
        self.steps.append(StepSpec(step, role, action, server_id, params, depends_on))
        return step

    def ip(self, server_id: str) -> str:
        ip = self.node_ips.get(server_id)
        if ip is None:
            raise Conflict(f"server {server_id} has no registered ip address")
        return parse_address(ip, f"server {server_id}'s ip")

    def node_user(self, role: str, server_id: str, email: str) -> str:
        """The key of the step that makes the service's user exist on ``server_id``.

        The user goes on the package named after the plan's exact limits
        (domain/hestia_package.py), never rewritten once made. The web node's package is a
        step of its own, ahead of the web user, as the chain reads "package → web user → …".
        Every user step carries the plan too and sees to the package first: on a mail or DNS
        node that saves a whole dispatch (three events, two messages) per node per deploy, and
        everywhere it re-makes a package removed as unused (``unused_packages``) between its
        package step and its user step.
        """
        if server_id in self._user_steps:
            return self._user_steps[server_id]
        suffix = f"@{server_id}" if role == "dns" else ""
        plan = self.service.plan
        package_name = content_package(plan)
        quotas = {k: v for k, v in plan.items() if k not in _QUOTA_EXCLUDED}
        user_params: dict[str, Any] = {
            "user": self.service.user,
            "package": package_name,
            "email": email,
            "password_sealed": self.service.password_sealed,
            "plan": quotas,
        }
        after: tuple[str, ...] = ()
        if role == "web":
            package = self.add(
                f"{self.prefix}{role}.package{suffix}",
                role,
                "ensure_package",
                server_id,
                {"package": package_name, "plan": quotas},
                owned=False,
            )
            after = (package,)
        user = self.add(
            f"{self.prefix}{role}.user{suffix}", role, "ensure_user", server_id, user_params, after
        )
        self._user_steps[server_id] = user
        return user

    def unused_packages(self, role: str, server_id: str, after: str) -> str:
        """A step after ``after`` (a user moved or removed on ``server_id``) that removes the
        packages hostwright made there which no user uses any more."""
        suffix = f"@{server_id}" if role == "dns" else ""
        return self.add(
            f"{self.prefix}{role}.packages{suffix}",
            role,
            "remove_unused_packages",
            server_id,
            {},
            (after,),
            owned=False,  # packages are shared by content, never one service's
        )

    def php(self, web: str, web_domain: str) -> tuple[str, ...]:
        """The site's PHP version on ``web`` after its web domain, when the plan names one;
        the key of that step, if any."""
        version = self.service.plan.get("php_version")
        if not version:
            return ()
        return (
            self.add(
                "web.php",
                "web",
                "ensure_php",
                web,
                {"user": self.service.user, "domain": self.service.domain, "php_version": version},
                (web_domain,),
            ),
        )

    def remove(
        self,
        role: str,
        thing: str,
        action: str,
        server_id: str,
        params: dict[str, Any],
        *,
        owns_node: bool = True,
    ) -> None:
        """A removal step; ``owns_node`` = the service's own user on that node goes after it."""
        key = self.add(f"remove.{role}.{thing}", role, action, server_id, params)
        if owns_node:
            self._removals.setdefault(server_id, (role, []))[1].append(key)

    def remove_users(self) -> None:
        """The service's user on each node it owns, after everything else removed there (the
        handler deletes only a user carrying the service's owner mark), then the packages no
        user there uses any more."""
        for server_id, (role, keys) in self._removals.items():
            suffix = f"@{server_id}" if role == "dns" else ""
            user = self.add(
                f"remove.{role}.user{suffix}",
                role,
                "remove_user",
                server_id,
                {"user": self.service.user},
                tuple(keys),
            )
            self.add(
                f"remove.{role}.packages{suffix}",
                role,
                "remove_unused_packages",
                server_id,
                {},
                (user,),
                owned=False,
            )


def parse_address(raw: str, what: str) -> str:
    """``raw`` as a compressed IP address, or InvalidInput naming ``what``."""
    try:
        return ipaddress.ip_address(raw).compressed
    except ValueError as exc:
        raise InvalidInput(f"{what} {raw!r} is not an IP address") from exc


def address_type(ip: str) -> str:
    """The record type that holds ``ip``: A or AAAA."""
    return "AAAA" if ipaddress.ip_address(ip).version == 6 else "A"
