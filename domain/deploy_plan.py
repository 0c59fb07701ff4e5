"""Deploy and removal chains: which idempotent steps, on which node, in which order.

``plan_deploy`` and ``plan_removal`` consume a service's facts, its placement, the provider's
settings (vanity) and the nodes' addresses, and emit ``StepSpec``s in dependency order (every
step comes after the steps it depends on). They decide nothing at run time: the one value known
only then — the DKIM key — is a reference to the DKIM step's outputs. ``plan_deploy`` builds
(or converges) the service; ``plan_removal`` removes what it built (terminate, factory reset):
the service's own users go last on each node, after everything else removed there, then the
Hestia packages of hostwright's form no user on that node uses any more. The package a service's
users go on is named after its exact limits (domain/hestia_package.py): the same content is the
same package on a node, other quotas are another, and none is ever rewritten.

Actions and their params (every value JSON-able; a handler receives exactly these keys). Every
action but the two on packages (``ensure_package``, ``remove_unused_packages``: shared by
content, never one service's) also gets ``owner``, the service id: the handler marks what it
makes with it and never adopts, changes or removes what does not carry that mark
(handlers/ownership.py).

=================== ===== =====================================================================
action              role  params
=================== ===== =====================================================================
ensure_package      web   package (str: ``content_package(plan)``, ``hw-<digest>-<name>``),
                          plan (quota dict: HostingPlan fields but package, php_version and
                          mailbox_quota_mb; an int or None = unlimited)
ensure_user         any   user, package, email, password_sealed (str | None; None = the
                          handler sets a password of its own and never reports it), plan
                          (as ensure_package's: the package is ensured first; a ``hw-…``
                          package the user leaves is removed when no one else is on it)
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
remove_user         any   user (only a user carrying the service's owner mark goes)
seed_certificate    ssl   role, names, user, domain, ip, dns, shared, provider_domain
                          (domain/ssl_plan.py; planned only when automatic SSL is on)
=================== ===== =====================================================================

``remove_unused_packages`` (any role, no params) removes the node's ``hw-…`` packages no user
there uses; it follows each ``remove_user`` (``remove.<role>.packages``).

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

Where each part lives: the steps, the service facts and the chain that orders them in
domain/step_chain.py; split and unified in domain/own_domain_plan.py; vanity in
domain/vanity_plan.py; the provider's settings and the scope guard in
domain/provider_settings.py. Suspend, unsuspend and change plan are planned in
domain/lifecycle_plan.py, through the same ``RunPlan``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from domain import own_domain_plan, vanity_plan
from domain.placement import Placement
from domain.provider_settings import ProviderSettings, check_scope
from domain.step_chain import ServiceFacts, StepChain, StepSpec

# the names other layers import from here; the types are those of the plans' signatures
__all__ = ["ProviderSettings", "RunPlan", "ServiceFacts", "StepSpec", "plan_deploy", "plan_removal"]

OwnDomainSteps = Callable[[StepChain, ServiceFacts, Placement], None]
VanitySteps = Callable[[StepChain, ServiceFacts, Placement, ProviderSettings], None]


@dataclass(frozen=True)
class RunPlan:
    """One run kind: its steps in split or unified mode and in vanity mode.

    Called with the service's facts, its placement, the provider's settings and the nodes'
    addresses (and ``ssl``: whether the provider turned automatic SSL on, which only a
    deploy's chain reads), it refuses what ``check_scope`` refuses and returns the steps in
    dependency order. ``prefix`` goes before the keys of the node set-up steps the chain adds
    (``change_plan.web.package``).
    """

    own_domain: OwnDomainSteps
    vanity: VanitySteps
    prefix: str = ""

    def __call__(
        self,
        service: ServiceFacts,
        placement: Placement,
        provider: ProviderSettings | None,
        node_ips: Mapping[str, str],
        *,
        ssl: bool = False,
    ) -> list[StepSpec]:
        check_scope(service, provider)
        chain = StepChain(service, node_ips, self.prefix, ssl=ssl)
        if service.mode == "vanity":
            assert provider is not None  # check_scope refused it otherwise
            self.vanity(chain, service, placement, provider)
        else:
            self.own_domain(chain, service, placement)
        return chain.steps

    @classmethod
    def switch(cls, kind: str) -> RunPlan:
        """Suspend or unsuspend (``kind``): each node's part at once, nothing depends."""
        return cls(
            functools.partial(own_domain_plan.switch, kind),
            functools.partial(vanity_plan.switch, kind),
        )


plan_deploy = RunPlan(own_domain_plan.deploy, vanity_plan.deploy)
plan_removal = RunPlan(own_domain_plan.removal, vanity_plan.removal)
