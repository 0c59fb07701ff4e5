"""Deploy and removal chains: which idempotent steps, on which node, in which order.

``plan_deploy`` and ``plan_removal`` consume a service's facts, its placement, the provider's
settings (vanity) and the nodes' addresses, and emit ``StepSpec``s in dependency order (every
step comes after the steps it depends on). They decide nothing at run time: the one value known
only then — the DKIM key — is a reference to the DKIM step's outputs.

Actions and their params (every value JSON-able; a handler receives exactly these keys):

=================== ===== =====================================================================
action              role  params
=================== ===== =====================================================================
ensure_package      web   package (str), plan (quota dict: HostingPlan fields but package,
                          php_version and mailbox_quota_mb; an int or None = unlimited)
ensure_user         any   user, package, email, password_sealed (str | None; None = the
                          handler sets a password of its own and never reports it), plan
                          (optional, as ensure_package's: the package is ensured first)
ensure_web_domain   web   user, domain, ip (the node's address), aliases (list of names)
ensure_php          web   user, domain, php_version ("8.2")
ensure_mail_domain  mail  user, domain, dkim (bool)
ensure_dkim         mail  user, domain → outputs {"dkim_txt": "<TXT value of mail._domainkey>"}
ensure_mailbox      mail  user, domain, account (local part), password_sealed, quota (MB;
                          only when the plan has mailbox_quota_mb)
ensure_dns_zone     dns   user, domain, ip (the zone's default address: the web node's)
ensure_dns_records  dns   user, domain, records (list of record dicts, below)
ensure_dns_record   dns   user, domain, record, type, value
remove_web_domain   web   user, domain
remove_mail_domain  mail  user, domain
remove_mailbox      mail  user, domain, account
remove_dns_zone     dns   user, domain
remove_dns_record   dns   user, domain, record, type, value (only that exact record goes)
remove_user         any   user, email (the contact it was created with)
=================== ===== =====================================================================

A record dict is ``{record, type, value}`` plus ``priority`` (int) for MX; instead of ``value``
it may carry ``value_from: {"step": <step key>, "output": <key>}``, to be read from the task
message's ``inputs[step][output]`` (the outputs of a step it depends on). Names are relative to
the zone (``@`` = apex); MX targets are absolute names without a trailing dot; TXT values are
unquoted. ensure_dns_records makes each listed (record, type) hold exactly that value and leaves
other records alone. "any" role: node set-up steps go to the queue of the first role that needs
the node (``task.<role>.<server_id>``), so every role handler must implement them.

Step keys: ``<role>.<thing>`` (``web.user``), ``@<server_id>`` appended for per-DNS-node steps
(``dns.records@dns2``); removal steps start with ``remove.`` so a removal run and a deploy run
can be joined into one (factory reset) without clashing.

Vanity: the service's own web user and ``<label>.<provider_domain>``; the mailbox
``<label>@<provider_domain>`` on the provider's shared mail user; the A (AAAA) record ``<label>``
in the provider's zone. No step creates, changes or removes the provider's domain, zone or users.

Suspend, unsuspend and change plan are planned in domain/lifecycle_plan.py.
"""

from __future__ import annotations

import hashlib
import ipaddress
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from domain.errors import Conflict, InvalidInput
from domain.names import normalise_domain, validate_label, validate_username
from domain.placement import Placement
from domain.server import parse_server_id, parse_unix_user
from domain.service import Service

DMARC_POLICY = "v=DMARC1; p=quarantine; pct=100"
MX_PRIORITY = 10
# labels a vanity service may never take in the provider's zone or as a shared mailbox:
# the provider's own hosts, and the RFC 2142 role mailboxes
RESERVED_VANITY_LABELS = frozenset(
    {
        "www",
        "mail",
        "webmail",
        "smtp",
        "imap",
        "pop",
        "pop3",
        "ftp",
        "ns1",
        "ns2",
        "ns3",
        "ns4",
        "autoconfig",
        "autodiscover",
        "admin",
        "root",
        "postmaster",
        "hostmaster",
        "webmaster",
        "abuse",
        "noc",
        "security",
        "info",
        "support",
        "noreply",
    }
)
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


@dataclass(frozen=True)
class ProviderSettings:
    """The provider's shared things that vanity services hang off (never changed by a plan).

    provider_domain    apex of the shared zone and mail domain, e.g. "example.net"
    shared_mail_user   Hestia user owning provider_domain's mail domain (holds the mailboxes)
    provider_dns_user  Hestia user owning provider_domain's zone on every DNS node
    mail_server        server_id of the node holding shared_mail_user; None = the placement's
    web_ip             address published in a vanity's A/AAAA record (e.g. a load balancer);
                       None = the web node's registered ip. Vanity publishes no mail records
                       (mail goes to the provider's MX), so there is no mail address here.
    reserved_labels    labels vanity services may not use, on top of RESERVED_VANITY_LABELS
    """

    provider_domain: str
    shared_mail_user: str
    provider_dns_user: str
    mail_server: str | None = None
    web_ip: str | None = None
    reserved_labels: frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        if normalise_domain(self.provider_domain) != self.provider_domain:
            raise InvalidInput(
                f"provider_domain {self.provider_domain!r} must be given in lowercase ASCII "
                "without a trailing dot"
            )
        parse_unix_user(self.shared_mail_user, "shared_mail_user")
        parse_unix_user(self.provider_dns_user, "provider_dns_user")
        if self.mail_server is not None:
            parse_server_id(self.mail_server)
        if self.web_ip is not None:
            _address(self.web_ip, "provider web_ip")

    @property
    def users(self) -> frozenset[str]:
        return frozenset({self.shared_mail_user, self.provider_dns_user})


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


def mailbox_quota(service: ServiceFacts) -> int | None:
    """The vanity mailbox's quota in MB from the service's plan; None = not set."""
    value = service.plan.get(MAILBOX_QUOTA_FIELD)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise InvalidInput(f"plan.{MAILBOX_QUOTA_FIELD} must be a whole number of MB")
    return value


def check_vanity_label(label: str, provider: ProviderSettings) -> None:
    """InvalidInput when a vanity label would take one of the provider's own names."""
    label = validate_label(label)
    if label in RESERVED_VANITY_LABELS or label in provider.reserved_labels:
        raise InvalidInput(
            f"label {label!r} is reserved: it names one of the provider's own hosts or mailboxes"
        )


def plan_deploy(
    service: ServiceFacts,
    placement: Placement,
    provider: ProviderSettings | None,
    node_ips: Mapping[str, str],
) -> list[StepSpec]:
    """The steps that build (or converge) the service, in dependency order."""
    check_scope(service, provider)
    chain = StepChain(service, node_ips)
    if service.mode == "vanity":
        assert provider is not None  # check_scope refused it otherwise
        _vanity_deploy(chain, service, placement, provider)
    else:
        _full_deploy(chain, service, placement)
    return chain.steps


def plan_removal(
    service: ServiceFacts,
    placement: Placement,
    provider: ProviderSettings | None,
    node_ips: Mapping[str, str],
) -> list[StepSpec]:
    """The steps that remove what ``plan_deploy`` built (terminate, factory reset).

    The service's own users go last on each node, after everything else removed there; the
    Hestia package stays (it is shared by name with other services on the plan).
    """
    check_scope(service, provider)
    chain = StepChain(service, node_ips)
    if service.mode == "vanity":
        assert provider is not None  # check_scope refused it otherwise
        _vanity_removal(chain, service, placement, provider)
    else:
        _full_removal(chain, service, placement)
    chain.remove_users(contact_email(service, provider))
    return chain.steps


def contact_email(service: ServiceFacts, provider: ProviderSettings | None) -> str:
    """The contact address the service's users are created with (see the deploy chains)."""
    if service.mode == "vanity" and provider is not None:
        return f"{service.label}@{provider.provider_domain}"
    return f"webmaster@{service.domain}"


class StepChain:
    """Collects steps in order; sets up each node (package, user) once, however many roles
    the node serves for this service. Also used by domain/lifecycle_plan.py."""

    def __init__(
        self, service: ServiceFacts, node_ips: Mapping[str, str], prefix: str = ""
    ) -> None:
        self.service = service
        self.node_ips = node_ips
        self.prefix = prefix  # put before the keys of node set-up steps ("change_plan.")
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
    ) -> str:
        known = {s.step for s in self.steps}
        if step in known or not set(depends_on) <= known:
            raise ValueError(f"step {step} is a duplicate or depends on an unplanned step")
        self.steps.append(StepSpec(step, role, action, server_id, params, depends_on))
        return step

    def ip(self, server_id: str) -> str:
        ip = self.node_ips.get(server_id)
        if ip is None:
            raise Conflict(f"server {server_id} has no registered ip address")
        return _address(ip, f"server {server_id}'s ip")

    def node_user(self, role: str, server_id: str, email: str) -> str:
        """The key of the step that makes the service's user exist on ``server_id``.

        The web node's package is a step of its own, ahead of the web user, as the chain
        reads "package → web user → …". On a mail or DNS node the user step carries the plan
        and sees to the package first: a Hestia user cannot exist without its package, and a
        step of its own there cost a whole dispatch (three events, two messages) per node
        per deploy for what is, after the first deploy, one probe.
        """
        if server_id in self._user_steps:
            return self._user_steps[server_id]
        suffix = f"@{server_id}" if role == "dns" else ""
        plan = self.service.plan
        package_name = str(plan.get("package", "default"))
        quotas = {k: v for k, v in plan.items() if k not in _QUOTA_EXCLUDED}
        user_params: dict[str, Any] = {
            "user": self.service.user,
            "package": package_name,
            "email": email,
            "password_sealed": self.service.password_sealed,
        }
        after: tuple[str, ...] = ()
        if role == "web":
            package = self.add(
                f"{self.prefix}{role}.package{suffix}",
                role,
                "ensure_package",
                server_id,
                {"package": package_name, "plan": quotas},
            )
            after = (package,)
        else:
            user_params["plan"] = quotas
        user = self.add(
            f"{self.prefix}{role}.user{suffix}", role, "ensure_user", server_id, user_params, after
        )
        self._user_steps[server_id] = user
        return user

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

    def remove_users(self, email: str) -> None:
        """``email``: the contact the user was created with (the handler checks it is ours)."""
        for server_id, (role, keys) in self._removals.items():
            suffix = f"@{server_id}" if role == "dns" else ""
            self.add(
                f"remove.{role}.user{suffix}",
                role,
                "remove_user",
                server_id,
                {"user": self.service.user, "email": email},
                tuple(keys),
            )


def _full_deploy(chain: StepChain, service: ServiceFacts, placement: Placement) -> None:
    """Split and unified: the same chain; on one node (unified) the set-up happens once."""
    domain, user = service.domain, service.user
    email = contact_email(service, None)
    web, mail = placement.web_server, placement.mail_server
    web_ip, mail_ip = chain.ip(web), chain.ip(mail)

    web_user = chain.node_user("web", web, email)
    web_domain = chain.add(
        "web.domain",
        "web",
        "ensure_web_domain",
        web,
        {"user": user, "domain": domain, "ip": web_ip, "aliases": [f"www.{domain}"]},
        (web_user,),
    )
    _php(chain, service, web, web_domain)

    mail_user = chain.node_user("mail", mail, email)
    mail_domain = chain.add(
        "mail.domain",
        "mail",
        "ensure_mail_domain",
        mail,
        {"user": user, "domain": domain, "dkim": True},
        (mail_user,),
    )
    dkim = chain.add(
        "mail.dkim", "mail", "ensure_dkim", mail, {"user": user, "domain": domain}, (mail_domain,)
    )

    for dns in placement.dns_servers:
        dns_user = chain.node_user("dns", dns, email)
        zone = chain.add(
            f"dns.zone@{dns}",
            "dns",
            "ensure_dns_zone",
            dns,
            {"user": user, "domain": domain, "ip": web_ip},
            (dns_user,),
        )
        chain.add(
            f"dns.records@{dns}",
            "dns",
            "ensure_dns_records",
            dns,
            {
                "user": user,
                "domain": domain,
                "records": zone_records(domain, web_ip, mail_ip, dkim),
            },
            (zone, dkim),
        )


def _vanity_deploy(
    chain: StepChain, service: ServiceFacts, placement: Placement, provider: ProviderSettings
) -> None:
    assert service.label is not None
    label, user = service.label, service.user
    web = placement.web_server
    web_user = chain.node_user("web", web, contact_email(service, provider))
    web_domain = chain.add(
        "web.domain",
        "web",
        "ensure_web_domain",
        web,
        {"user": user, "domain": service.domain, "ip": chain.ip(web), "aliases": []},
        (web_user,),
    )
    _php(chain, service, web, web_domain)
    chain.add(
        "mail.mailbox",
        "mail",
        "ensure_mailbox",
        provider.mail_server or placement.mail_server,
        {
            "user": provider.shared_mail_user,
            "domain": provider.provider_domain,
            "account": label,
            "password_sealed": service.password_sealed,
            **_quota_param(service),
        },
    )
    published = vanity_address(chain, placement, provider)
    for dns in placement.dns_servers:
        chain.add(
            f"dns.record@{dns}",
            "dns",
            "ensure_dns_record",
            dns,
            {
                "user": provider.provider_dns_user,
                "domain": provider.provider_domain,
                "record": label,
                "type": address_type(published),
                "value": published,
            },
        )


def _quota_param(service: ServiceFacts) -> dict[str, Any]:
    quota = mailbox_quota(service)
    return {} if quota is None else {"quota": quota}


def zone_records(domain: str, web_ip: str, mail_ip: str, dkim_step: str) -> list[dict[str, Any]]:
    """The records a split or unified zone holds; the DKIM value comes from ``dkim_step``."""
    mail_net = "ip6" if address_type(mail_ip) == "AAAA" else "ip4"
    # replace: each of these names holds only our value (Hestia's zone template puts its own
    # MX, SPF and www/webmail CNAMEs there; two SPF records make SPF fail outright)
    records: list[dict[str, Any]] = [
        {"record": "@", "type": address_type(web_ip), "value": web_ip},
        {"record": "www", "type": address_type(web_ip), "value": web_ip},
        {"record": "mail", "type": address_type(mail_ip), "value": mail_ip},
        {"record": "webmail", "type": address_type(mail_ip), "value": mail_ip},
        {"record": "@", "type": "MX", "value": f"mail.{domain}", "priority": MX_PRIORITY},
        {"record": "@", "type": "TXT", "value": f"v=spf1 a mx {mail_net}:{mail_ip} -all"},
        {"record": "_dmarc", "type": "TXT", "value": DMARC_POLICY},
        {
            "record": "mail._domainkey",
            "type": "TXT",
            "value_from": {"step": dkim_step, "output": "dkim_txt"},
        },
    ]
    return [{**record, "replace": True} for record in records]


def _vanity_removal(
    chain: StepChain, service: ServiceFacts, placement: Placement, provider: ProviderSettings
) -> None:
    """The site and its own user, the mailbox, the record: never the provider's things."""
    user = service.user
    assert service.label is not None
    label = service.label
    web = placement.web_server
    chain.remove(
        "web", "domain", "remove_web_domain", web, {"user": user, "domain": service.domain}
    )
    chain.remove(
        "mail",
        "mailbox",
        "remove_mailbox",
        provider.mail_server or placement.mail_server,
        {
            "user": provider.shared_mail_user,
            "domain": provider.provider_domain,
            "account": label,
        },
        owns_node=False,
    )
    published = vanity_address(chain, placement, provider)
    record_type = address_type(published)
    for dns in placement.dns_servers:
        chain.remove(
            "dns",
            f"record@{dns}",
            "remove_dns_record",
            dns,
            {
                "user": provider.provider_dns_user,
                "domain": provider.provider_domain,
                "record": label,
                "type": record_type,
                "value": published,
            },
            owns_node=False,
        )


def _full_removal(chain: StepChain, service: ServiceFacts, placement: Placement) -> None:
    owned = {"user": service.user, "domain": service.domain}
    chain.remove("web", "domain", "remove_web_domain", placement.web_server, dict(owned))
    chain.remove("mail", "domain", "remove_mail_domain", placement.mail_server, dict(owned))
    for dns in placement.dns_servers:
        chain.remove("dns", f"zone@{dns}", "remove_dns_zone", dns, dict(owned))


def _php(chain: StepChain, service: ServiceFacts, web: str, web_domain: str) -> None:
    version = service.plan.get("php_version")
    if version:
        chain.add(
            "web.php",
            "web",
            "ensure_php",
            web,
            {"user": service.user, "domain": service.domain, "php_version": version},
            (web_domain,),
        )


def check_scope(service: ServiceFacts, provider: ProviderSettings | None) -> None:
    """Refuses plans that could touch the provider's shared domain, zone or users."""
    if provider is not None:
        if service.user in provider.users:
            raise Conflict(
                f"service {service.service_id}'s user {service.user!r} is one of the provider's "
                "shared users; it cannot be deployed or removed"
            )
        if service.mode != "vanity" and service.domain == provider.provider_domain:
            raise Conflict(
                f"service {service.service_id} has the provider's own domain "
                f"{service.domain}; only a vanity service may use it, as a subdomain"
            )
    if service.mode != "vanity":
        return
    if provider is None:
        raise Conflict(
            f"vanity service {service.service_id} needs the provider settings "
            "(provider_domain, shared_mail_user, provider_dns_user)"
        )
    if service.label is None or service.domain != f"{service.label}.{provider.provider_domain}":
        raise Conflict(
            f"vanity service {service.service_id}'s domain {service.domain} is not "
            f"<label>.{provider.provider_domain}"
        )
    try:
        check_vanity_label(service.label, provider)
    except InvalidInput as exc:
        raise Conflict(str(exc)) from exc


def vanity_address(chain: StepChain, placement: Placement, provider: ProviderSettings) -> str:
    """The address a vanity service's record publishes: the provider's web_ip, else the
    web node's."""
    if provider.web_ip is not None:
        return _address(provider.web_ip, "provider web_ip")
    return chain.ip(placement.web_server)


def _address(raw: str, what: str) -> str:
    try:
        return ipaddress.ip_address(raw).compressed
    except ValueError as exc:
        raise InvalidInput(f"{what} {raw!r} is not an IP address") from exc


def address_type(ip: str) -> str:
    """The record type that holds ``ip``: A or AAAA."""
    return "AAAA" if ipaddress.ip_address(ip).version == 6 else "A"
