"""The nodes, placements, provider settings and service facts the deploy and lifecycle plan
tests plan over, the hypothesis strategies of the Vanity property, and the check every plan
must pass.

Consumes nothing; emits domain values (ServerFacts, Placement, ProviderSettings, ServiceFacts).
"""

from __future__ import annotations

import json

from hypothesis import strategies as st

from domain.deploy_plan import ProviderSettings, ServiceFacts, StepSpec
from domain.placement import Placement
from domain.server import ServerFacts

SERVERS = [
    ServerFacts("web1", ("web",), "192.0.2.1"),
    ServerFacts("web2", ("web",), "192.0.2.2"),
    ServerFacts("mail1", ("mail",), "192.0.2.3"),
    ServerFacts("dns1", ("dns",), "192.0.2.4"),
    ServerFacts("dns2", ("dns",), "2001:db8::4"),
    ServerFacts("all1", ("web", "mail", "dns"), "192.0.2.9"),
]
IPS = {s.server_id: s.ip for s in SERVERS}
SPLIT = Placement("web1", "mail1", ("dns1", "dns2"))
UNIFIED = Placement("all1", "all1", ("all1",))
PROVIDER = ProviderSettings("example.net", "sharedmail", "sharedns", mail_server="mail1")
PLAN = {"package": "gold", "php_version": "8.2", "disk_mb": 1000, "mail_accounts": None}


def facts(mode: str = "split", **extra: object) -> ServiceFacts:
    fields: dict[str, object] = {"service_id": "42", "mode": mode, "domain": "shop.example.com"}
    fields.update(extra)
    return ServiceFacts(**fields)  # type: ignore[arg-type]


def vanity(label: str = "bob", provider: ProviderSettings = PROVIDER) -> ServiceFacts:
    return facts("vanity", domain=f"{label}.{provider.provider_domain}", label=label)


def by_key(steps: list[StepSpec]) -> dict[str, StepSpec]:
    return {s.step: s for s in steps}


def assert_well_formed(steps: list[StepSpec]) -> None:
    """Unique keys; every dependency planned earlier (so a DAG, listed in a valid order)."""
    seen: set[str] = set()
    for step in steps:
        assert step.step not in seen
        assert set(step.depends_on) <= seen, step
        assert step.role in ("web", "mail", "dns", "ssl")  # ssl: automatic SSL on
        json.dumps(step.params)  # travels in a task message
        seen.add(step.step)


labels = st.from_regex(r"[a-z0-9](?:[a-z0-9-]{0,20}[a-z0-9])?", fullmatch=True).filter(
    lambda s: s[2:4] != "--"
)
users = st.from_regex(r"[a-z][a-z0-9_-]{0,14}", fullmatch=True)
providers = st.builds(
    ProviderSettings,
    provider_domain=st.lists(labels, min_size=2, max_size=3)
    .map(".".join)
    .filter(lambda d: not d.split(".")[-1].isdigit()),
    shared_mail_user=users,
    provider_dns_user=users,
    mail_server=st.sampled_from([None, "mail1", "all1"]),
    web_ip=st.sampled_from([None, "198.51.100.7", "2001:db8::7"]),
)
placements = st.sampled_from([SPLIT, UNIFIED, Placement("web2", "all1", ("dns1",))])
