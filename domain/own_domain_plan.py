"""Split and unified modes: a site on the service's own domain, with its own mail and zone.

Consumes a StepChain (domain/step_chain.py), the service's facts and its placement; emits,
into the chain, the steps of each run kind. Both modes build the same chain: split puts web,
mail and each DNS zone on nodes of their own, unified puts them all on one node, where the
chain sets the node up once. The service's users are created with the contact
``webmaster@<domain>`` (an e-mail address only: what makes them the service's is the owner
mark the handler gives them, see domain/step_chain.py).
"""

from __future__ import annotations

from typing import Any

from domain import ssl_plan
from domain.placement import Placement
from domain.step_chain import ServiceFacts, StepChain, address_type, sealed_password

DMARC_POLICY = "v=DMARC1; p=quarantine; pct=100"
MX_PRIORITY = 10


def deploy(chain: StepChain, service: ServiceFacts, placement: Placement) -> None:
    """Web user and site, mail domain and DKIM key, then each DNS node's zone and records;
    with automatic SSL on, the web and mail certificates are seeded last (``ssl.web``,
    ``ssl.mail``: domain/ssl_plan.py)."""
    domain, user = service.domain, service.user
    email = contact_email(service)
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
    php = chain.php(web, web_domain)

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

    records: list[str] = []
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
        records.append(
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
        )
    if chain.ssl:
        zones = [(dns, user, domain) for dns in placement.dns_servers]
        web_after = (web_domain, *php, *records)
        ssl_plan.seed_web(chain, web, [domain, f"www.{domain}"], web_ip, web_after, zones)
        ssl_plan.seed_mail(chain, mail, mail_ip, (mail_domain, *records), zones)


def removal(chain: StepChain, service: ServiceFacts, placement: Placement) -> None:
    """The site, the mail domain and every zone, then the service's user on each node."""
    owned = {"user": service.user, "domain": service.domain}
    chain.remove("web", "domain", "remove_web_domain", placement.web_server, dict(owned))
    chain.remove("mail", "domain", "remove_mail_domain", placement.mail_server, dict(owned))
    for dns in placement.dns_servers:
        chain.remove("dns", f"zone@{dns}", "remove_dns_zone", dns, dict(owned))
    chain.remove_users()


def switch(kind: str, chain: StepChain, service: ServiceFacts, placement: Placement) -> None:
    """``kind`` = suspend or unsuspend: the service's user on every node, at once."""
    for role, server_id in _nodes(placement):
        suffix = f"@{server_id}" if role == "dns" else ""
        user = {"user": service.user}
        chain.add(f"{kind}.{role}.user{suffix}", role, f"{kind}_user", server_id, user)


def change_plan(chain: StepChain, service: ServiceFacts, placement: Placement) -> None:
    """The service's user on every node onto the plan's package and quotas, then the
    packages no user there uses any more (the one it left, when no other service shares it)."""
    email = contact_email(service)
    for role, server_id in _nodes(placement):
        chain.unused_packages(role, server_id, chain.node_user(role, server_id, email))


def change_password(chain: StepChain, service: ServiceFacts, placement: Placement) -> None:
    """The service's user on every node (web, mail, each DNS node; once per node) takes the
    new password, at once: nothing depends."""
    for role, server_id in _nodes(placement):
        suffix = f"@{server_id}" if role == "dns" else ""
        params = {"user": service.user, "password_sealed": sealed_password(service)}
        chain.add(
            f"change_password.{role}.user{suffix}", role, "change_user_password", server_id, params
        )


def contact_email(service: ServiceFacts) -> str:
    """The contact address the service's users are created with."""
    return f"webmaster@{service.domain}"


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
