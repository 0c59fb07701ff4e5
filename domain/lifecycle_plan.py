"""Suspend, unsuspend and change-plan runs: which idempotent steps, on which node.

``plan_suspend``, ``plan_unsuspend`` and ``plan_change_plan`` consume what ``plan_deploy``
consumes (the service's facts, its placement, the provider's settings, the nodes' addresses)
and emit ``StepSpec``s (domain/deploy_plan.py). Terminate is ``plan_removal``.

Actions and their params (a handler receives exactly these keys):

==================== ===== ===================================================================
action               role  params
==================== ===== ===================================================================
suspend_user         any   user, email (the contact it was created with: another contact's
                           user is not ours and is never touched)
unsuspend_user       any   user, email
suspend_mailbox      mail  user (the provider's shared mail user), domain, account
unsuspend_mailbox    mail  user, domain, account, quota (optional: MB or "unlimited", set
                           once the mailbox is open again)
ensure_mailbox_quota mail  user, domain, account, quota (MB or "unlimited")
suspend_dns_record   dns   user (the zone's holder), domain (the zone), record, type, value
unsuspend_dns_record dns   user, domain, record, type, value
==================== ===== ===================================================================

Change plan uses deploy's set-up steps with deploy's params (``ensure_package`` then
``ensure_user`` on the web node, ``ensure_user`` carrying the plan on a mail or DNS node): the
package gets the plan's quotas and the user is moved onto it.

Split and unified: the service's user on every node the placement touches (web, mail, each DNS
node), once per node. Vanity: the service's own web user; the mailbox ``<label>@<provider
domain>`` on the provider's shared mail user; its record ``<label>`` in the provider's zone on
every DNS node, matched by name, type and value (never a stored id). Never the provider's users,
domain, zone or package.

Step keys: ``<kind>.<role>.<thing>`` with ``@<server_id>`` for per-DNS-node steps
(``suspend.dns.user@dns2``, ``unsuspend.mail.mailbox``, ``change_plan.web.package``). The steps
of a suspend or unsuspend run depend on nothing: every node is done at once.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from domain.deploy_plan import (
    ProviderSettings,
    ServiceFacts,
    StepChain,
    StepSpec,
    address_type,
    check_scope,
    contact_email,
    mailbox_quota,
    vanity_address,
)
from domain.placement import Placement


def plan_suspend(
    service: ServiceFacts,
    placement: Placement,
    provider: ProviderSettings | None,
    node_ips: Mapping[str, str],
) -> list[StepSpec]:
    """The steps that shut the service's site, mail and DNS off, keeping everything."""
    return _switch("suspend", service, placement, provider, node_ips)


def plan_unsuspend(
    service: ServiceFacts,
    placement: Placement,
    provider: ProviderSettings | None,
    node_ips: Mapping[str, str],
) -> list[StepSpec]:
    """The steps that turn on again what ``plan_suspend`` turned off."""
    return _switch("unsuspend", service, placement, provider, node_ips)


def plan_change_plan(
    service: ServiceFacts,
    placement: Placement,
    provider: ProviderSettings | None,
    node_ips: Mapping[str, str],
) -> list[StepSpec]:
    """The steps that put the service's users on its (new) plan's package and quotas."""
    check_scope(service, provider)
    chain = StepChain(service, node_ips, prefix="change_plan.")
    if service.mode != "vanity":
        email = contact_email(service, None)
        for role, server_id in _nodes(placement):
            chain.node_user(role, server_id, email)
        return chain.steps
    assert provider is not None  # check_scope refused it otherwise
    chain.node_user("web", placement.web_server, contact_email(service, provider))
    quota = mailbox_quota(service)
    if quota is not None:
        chain.add(
            "change_plan.mail.mailbox_quota",
            "mail",
            "ensure_mailbox_quota",
            provider.mail_server or placement.mail_server,
            {**_mailbox(service, provider), "quota": quota},
        )
    return chain.steps


def _switch(
    kind: str,
    service: ServiceFacts,
    placement: Placement,
    provider: ProviderSettings | None,
    node_ips: Mapping[str, str],
) -> list[StepSpec]:
    check_scope(service, provider)
    chain = StepChain(service, node_ips)
    if service.mode != "vanity":
        owner = {"user": service.user, "email": contact_email(service, None)}
        for role, server_id in _nodes(placement):
            suffix = f"@{server_id}" if role == "dns" else ""
            chain.add(f"{kind}.{role}.user{suffix}", role, f"{kind}_user", server_id, dict(owner))
        return chain.steps
    assert provider is not None  # check_scope refused it otherwise
    owner = {"user": service.user, "email": contact_email(service, provider)}
    chain.add(f"{kind}.web.user", "web", f"{kind}_user", placement.web_server, owner)
    mailbox = _mailbox(service, provider)
    quota = mailbox_quota(service)
    if kind == "unsuspend" and quota is not None:
        # a plan change made while suspended could not reach the closed mailbox
        mailbox["quota"] = quota
    mail_server = provider.mail_server or placement.mail_server
    chain.add(f"{kind}.mail.mailbox", "mail", f"{kind}_mailbox", mail_server, mailbox)
    published = vanity_address(chain, placement, provider)
    for dns in placement.dns_servers:
        record = {
            "user": provider.provider_dns_user,
            "domain": provider.provider_domain,
            "record": service.label,
            "type": address_type(published),
            "value": published,
        }
        chain.add(f"{kind}.dns.record@{dns}", "dns", f"{kind}_dns_record", dns, record)
    return chain.steps


def _nodes(placement: Placement) -> list[tuple[str, str]]:
    """(role, server_id) of every node the placement touches, each node once, first role wins."""
    seen: dict[str, str] = {}
    for role, server_id in (
        ("web", placement.web_server),
        ("mail", placement.mail_server),
        *(("dns", dns) for dns in placement.dns_servers),
    ):
        seen.setdefault(server_id, role)
    return [(role, server_id) for server_id, role in seen.items()]


def _mailbox(service: ServiceFacts, provider: ProviderSettings) -> dict[str, Any]:
    return {
        "user": provider.shared_mail_user,
        "domain": provider.provider_domain,
        "account": service.label,
    }
