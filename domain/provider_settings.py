"""The provider's shared things vanity services hang off, and the guard that keeps every plan
off them.

Consumes the provider's settings (domain, shared mail and DNS users, mail node, published
address, extra reserved labels) and a service's facts; emits ``ProviderSettings`` (validated)
and nothing else: ``check_scope``, ``check_order`` and ``check_vanity_label`` only refuse
(Conflict, InvalidInput). No plan creates, changes or removes the provider's domain, zone or
users, and ``check_order`` refuses at intake (422) every order a plan would refuse later.
"""

from __future__ import annotations

from dataclasses import dataclass

from domain.commands import OrderService
from domain.errors import Conflict, InvalidInput
from domain.names import normalise_domain, validate_label
from domain.server import parse_server_id, parse_unix_user
from domain.step_chain import ServiceFacts, parse_address

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
            parse_address(self.web_ip, "provider web_ip")

    @property
    def users(self) -> frozenset[str]:
        return frozenset({self.shared_mail_user, self.provider_dns_user})


def check_vanity_label(label: str, provider: ProviderSettings) -> None:
    """InvalidInput when a vanity label would take one of the provider's own names."""
    label = validate_label(label)
    if label in RESERVED_VANITY_LABELS or label in provider.reserved_labels:
        raise InvalidInput(
            f"label {label!r} is reserved: it names one of the provider's own hosts or mailboxes"
        )


def check_scope(service: ServiceFacts, provider: ProviderSettings | None) -> None:
    """Refuses plans that could touch the provider's shared domain, zone or users."""
    if provider is not None:
        if service.user in provider.users:
            raise Conflict(
                f"service {service.service_id}'s user {service.user!r} is one of the provider's "
                "shared users; it cannot be deployed or removed"
            )
        own = provider.provider_domain
        if service.mode != "vanity" and (
            service.domain == own or service.domain.endswith(f".{own}")
        ):
            raise Conflict(
                f"service {service.service_id}'s domain {service.domain} is the provider's own "
                f"domain {own} or under it; only a vanity service may use it, as <label>.{own}"
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


def check_order(order: OrderService, provider: ProviderSettings | None) -> None:
    """InvalidInput, at intake, for an order every deploy of it would refuse (``check_scope``):
    a vanity order where no provider domain is configured, a vanity domain that is not
    ``<label>.<provider domain>``, a reserved label, the provider's own users, or a
    non-vanity domain that is the provider's domain or under it (its zone would shadow the
    provider zone's records)."""
    if order.mode == "vanity":
        if provider is None:
            raise InvalidInput(
                "vanity services are not offered: no vanity domain is configured "
                "(HOSTWRIGHT_VANITY_DOMAIN)"
            )
        expected = f"{order.label}.{provider.provider_domain}"
        if order.domain != expected:
            raise InvalidInput(
                f"a vanity service's domain must be <label>.{provider.provider_domain} "
                f"({expected} for label {order.label!r}), not {order.domain}"
            )
    facts = ServiceFacts(
        service_id=order.service_id,
        mode=order.mode,
        domain=order.domain,
        username=order.username,
        label=order.label,
    )
    try:
        check_scope(facts, provider)
    except Conflict as exc:
        raise InvalidInput(str(exc)) from None
