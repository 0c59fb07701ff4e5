"""The pipeline's Planner port: domain/deploy_plan.py and domain/lifecycle_plan.py over the
registered nodes and the provider's vanity settings.

Run kinds: ``deploy`` (build or converge), ``reset`` (remove everything, then build again),
``terminate`` (remove only), ``suspend``, ``unsuspend``, ``change_plan``, ``change_password``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Any

from domain.deploy_plan import (
    ProviderSettings,
    ServiceFacts,
    StepSpec,
    plan_deploy,
    plan_removal,
)
from domain.errors import Conflict
from domain.lifecycle_plan import (
    plan_change_password,
    plan_change_plan,
    plan_suspend,
    plan_unsuspend,
)
from domain.placement import Placement, placement_for
from domain.service import Service
from ops.adapters.server_registry import ServerRegistry
from ops.settings import Settings

PlanFunction = Callable[
    [ServiceFacts, Placement, ProviderSettings | None, Mapping[str, str]], list[StepSpec]
]
PLANS: dict[str, PlanFunction] = {
    "deploy": plan_deploy,
    "terminate": plan_removal,
    "suspend": plan_suspend,
    "unsuspend": plan_unsuspend,
    "change_plan": plan_change_plan,
    "change_password": plan_change_password,
}
RUN_KINDS = (*PLANS, "reset")


class DeployPlanner:
    """``ssl``: the provider turned automatic SSL on (``HOSTWRIGHT_SSL=auto``), so a deploy
    (and the build half of a reset) ends with the ssl steps; off, the plans are as before."""

    def __init__(
        self, registry: ServerRegistry, provider: ProviderSettings | None, *, ssl: bool = False
    ) -> None:
        self._registry = registry
        self._provider = provider
        self._ssl = ssl

    def place(self, service: Service) -> dict[str, Any]:
        try:
            placement = placement_for(service.service_id, service.mode, self._registry.servers())
        except Conflict:
            # a node registered in the last moments may be the one it needs: look again
            self._registry.refresh()
            placement = placement_for(service.service_id, service.mode, self._registry.servers())
        return placement.to_json()

    def steps(self, service: Service, placement: dict[str, Any], kind: str) -> list[StepSpec]:
        if kind not in RUN_KINDS:
            raise ValueError(f"unknown run kind {kind!r}; one of {', '.join(RUN_KINDS)}")
        nodes = self._nodes(service, placement)
        facts = ServiceFacts.from_service(service)
        ips = self._registry.ips()
        if kind == "deploy":
            return plan_deploy(facts, nodes, self._provider, ips, ssl=self._ssl)
        if kind != "reset":
            return PLANS[kind](facts, nodes, self._provider, ips)
        deploy = plan_deploy(facts, nodes, self._provider, ips, ssl=self._ssl)
        removal = plan_removal(facts, nodes, self._provider, ips)
        removed = tuple(step.step for step in removal)
        # factory reset: everything is removed before anything is built again
        return removal + [
            step if step.depends_on else replace(step, depends_on=removed) for step in deploy
        ]

    def _nodes(self, service: Service, placement: dict[str, Any]) -> Placement:
        web, mail = placement["web_server"], placement["mail_server"]
        if service.mode == "unified":
            return Placement(web_server=web, mail_server=mail, dns_servers=(web,))
        # every DNS node serves every zone, including one registered after the service was placed
        dns = tuple(s.server_id for s in self._registry.servers() if "dns" in s.roles)
        return Placement(web_server=web, mail_server=mail, dns_servers=dns)


def provider_settings(settings: Settings) -> ProviderSettings | None:
    if not settings.vanity_domain:
        return None
    return ProviderSettings(
        provider_domain=settings.vanity_domain,
        shared_mail_user=settings.vanity_mail_user or "",
        provider_dns_user=settings.vanity_dns_user or "",
        mail_server=settings.vanity_mail_server,
    )
