"""Vanity mode: a site at ``<label>.<provider_domain>`` on the provider's shared domain.

Consumes a StepChain (domain/step_chain.py), the service's facts, its placement and the
provider's settings (domain/provider_settings.py); emits, into the chain, the steps of each
run kind. The service has its own web user and site; the mailbox ``<label>@<provider_domain>``
lives on the provider's shared mail user; the A (AAAA) record ``<label>`` lives in the
provider's zone on every DNS node, matched by name, type and value. No step creates, changes
or removes the provider's domain, zone or users. Every step carries the service id as
``owner`` (domain/step_chain.py): the mailbox and the record are the service's by the owner
marks the handlers put beside them (an alias, a TXT record at the same name), never by name.
"""

from __future__ import annotations

from typing import Any

from domain import ssl_plan
from domain.errors import InvalidInput
from domain.placement import Placement
from domain.provider_settings import ProviderSettings
from domain.step_chain import (
    MAILBOX_QUOTA_FIELD,
    ServiceFacts,
    StepChain,
    address_type,
    parse_address,
    sealed_password,
)


def deploy(
    chain: StepChain, service: ServiceFacts, placement: Placement, provider: ProviderSettings
) -> None:
    """The service's web user and site, its mailbox, its record in the provider's zone; with
    automatic SSL on, ``ssl.web`` last: the site served the provider's wildcard
    (domain/ssl_plan.py)."""
    web = placement.web_server
    web_user = chain.node_user("web", web, contact_email(service, provider))
    web_domain = chain.add(
        "web.domain",
        "web",
        "ensure_web_domain",
        web,
        {"user": service.user, "domain": service.domain, "ip": chain.ip(web), "aliases": []},
        (web_user,),
    )
    php = chain.php(web, web_domain)
    mailbox = {**_mailbox(service, provider), "password_sealed": service.password_sealed}
    quota = mailbox_quota(service)
    if quota is not None:
        mailbox["quota"] = quota
    chain.add("mail.mailbox", "mail", "ensure_mailbox", _mail_server(placement, provider), mailbox)
    published = published_address(chain, placement, provider)
    record = _record(service, provider, published)
    records = [
        chain.add(f"dns.record@{dns}", "dns", "ensure_dns_record", dns, dict(record))
        for dns in placement.dns_servers
    ]
    if chain.ssl:  # the provider's wildcard, DNS-01 in the provider's zone on our DNS nodes
        zone = (provider.provider_dns_user, provider.provider_domain)
        zones = [(dns, *zone) for dns in placement.dns_servers]
        after = (web_domain, *php, *records)
        domain = provider.provider_domain
        ssl_plan.seed_web(
            chain, web, [service.domain], published, after, zones, provider_domain=domain
        )


def removal(
    chain: StepChain, service: ServiceFacts, placement: Placement, provider: ProviderSettings
) -> None:
    """The site and its own user, the mailbox, the record: never the provider's things."""
    chain.remove(
        "web",
        "domain",
        "remove_web_domain",
        placement.web_server,
        {"user": service.user, "domain": service.domain},
    )
    chain.remove(
        "mail",
        "mailbox",
        "remove_mailbox",
        _mail_server(placement, provider),
        _mailbox(service, provider),
        owns_node=False,
    )
    record = _record(service, provider, published_address(chain, placement, provider))
    for dns in placement.dns_servers:
        chain.remove(
            "dns", f"record@{dns}", "remove_dns_record", dns, dict(record), owns_node=False
        )
    chain.remove_users()


def switch(
    kind: str,
    chain: StepChain,
    service: ServiceFacts,
    placement: Placement,
    provider: ProviderSettings,
) -> None:
    """``kind`` = suspend or unsuspend: the web user, the mailbox and the record, at once."""
    user = {"user": service.user}
    chain.add(f"{kind}.web.user", "web", f"{kind}_user", placement.web_server, user)
    mailbox = _mailbox(service, provider)
    quota = mailbox_quota(service)
    if kind == "unsuspend" and quota is not None:
        # a plan change made while suspended could not reach the closed mailbox
        mailbox["quota"] = quota
    mail_server = _mail_server(placement, provider)
    chain.add(f"{kind}.mail.mailbox", "mail", f"{kind}_mailbox", mail_server, mailbox)
    record = _record(service, provider, published_address(chain, placement, provider))
    for dns in placement.dns_servers:
        chain.add(f"{kind}.dns.record@{dns}", "dns", f"{kind}_dns_record", dns, dict(record))


def change_plan(
    chain: StepChain, service: ServiceFacts, placement: Placement, provider: ProviderSettings
) -> None:
    """The web user onto the plan's package, then the web node's packages no user uses any
    more; the mailbox's quota when the plan sets one."""
    web = placement.web_server
    chain.unused_packages("web", web, chain.node_user("web", web, contact_email(service, provider)))
    quota = mailbox_quota(service)
    if quota is not None:
        chain.add(
            "change_plan.mail.mailbox_quota",
            "mail",
            "ensure_mailbox_quota",
            _mail_server(placement, provider),
            {**_mailbox(service, provider), "quota": quota},
        )


def change_password(
    chain: StepChain, service: ServiceFacts, placement: Placement, provider: ProviderSettings
) -> None:
    """The service's own web user and its mailbox ``<label>@<provider domain>`` (made with
    the service's password at deploy) take the new password, at once; never the provider's
    shared mail user, whose password is the provider's."""
    sealed = sealed_password(service)
    web = {"user": service.user, "password_sealed": sealed}
    chain.add("change_password.web.user", "web", "change_user_password", placement.web_server, web)
    mailbox = {**_mailbox(service, provider), "password_sealed": sealed}
    mail_server = _mail_server(placement, provider)
    chain.add(
        "change_password.mail.mailbox", "mail", "change_mailbox_password", mail_server, mailbox
    )


def contact_email(service: ServiceFacts, provider: ProviderSettings) -> str:
    """The contact address the service's users are created with."""
    return f"{service.label}@{provider.provider_domain}"


def mailbox_quota(service: ServiceFacts) -> int | None:
    """The vanity mailbox's quota in MB from the service's plan; None = not set."""
    value = service.plan.get(MAILBOX_QUOTA_FIELD)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise InvalidInput(f"plan.{MAILBOX_QUOTA_FIELD} must be a whole number of MB")
    return value


def published_address(chain: StepChain, placement: Placement, provider: ProviderSettings) -> str:
    """The address a vanity service's record publishes: the provider's web_ip, else the
    web node's."""
    if provider.web_ip is not None:
        return parse_address(provider.web_ip, "provider web_ip")
    return chain.ip(placement.web_server)


def _mail_server(placement: Placement, provider: ProviderSettings) -> str:
    return provider.mail_server or placement.mail_server


def _mailbox(service: ServiceFacts, provider: ProviderSettings) -> dict[str, Any]:
    return {
        "user": provider.shared_mail_user,
        "domain": provider.provider_domain,
        "account": service.label,
    }


def _record(service: ServiceFacts, provider: ProviderSettings, published: str) -> dict[str, Any]:
    return {
        "user": provider.provider_dns_user,
        "domain": provider.provider_domain,
        "record": service.label,
        "type": address_type(published),
        "value": published,
    }
