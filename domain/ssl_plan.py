"""The automatic-SSL steps that end a deploy chain, when the provider turned SSL on.

Consumes a StepChain (domain/step_chain.py) whose ``ssl`` is set, the node the certificate is
installed on, the steps it must come after and the service's DNS nodes; emits one
``seed_certificate`` step (role ``ssl``, on the node that serves the names, so its task goes
to ``task.ssl.<server_id>``). The step only records that the certificate is wanted
(handlers/ssl_steps.py): the service goes active without waiting for the CA.

``seed_certificate`` params: ``role`` (``web`` | ``mail``), ``names`` (the names the
certificate covers), ``user``, ``domain`` (the Hestia user and web/mail domain it is installed
on), ``ip`` (the address the names must resolve to), ``dns`` (``[{server_id, user, zone}]``:
where a DNS-01 TXT record may go; empty when the zone is not ours), ``shared``
(``"wildcard"`` for a vanity site served the provider's wildcard, else None),
``provider_domain`` (with ``shared``), and ``owner``.
"""

from __future__ import annotations

from collections.abc import Sequence

from domain.step_chain import StepChain

SSL_ROLE = "ssl"
SEED_ACTION = "seed_certificate"


def seed_web(
    chain: StepChain,
    server_id: str,
    names: list[str],
    ip: str,
    after: tuple[str, ...],
    dns: Sequence[tuple[str, str, str]] = (),
    *,
    provider_domain: str | None = None,
) -> str:
    """``ssl.web``: the site's certificate (the provider's wildcard when ``provider_domain``)."""
    return _seed(chain, "web", server_id, names, ip, after, dns, provider_domain)


def seed_mail(
    chain: StepChain,
    server_id: str,
    ip: str,
    after: tuple[str, ...],
    dns: Sequence[tuple[str, str, str]],
) -> str:
    """``ssl.mail``: ``mail.<domain>`` and ``webmail.<domain>`` on the mail node."""
    domain = chain.service.domain
    names = [f"mail.{domain}", f"webmail.{domain}"]
    return _seed(chain, "mail", server_id, names, ip, after, dns, None)


def _seed(
    chain: StepChain,
    role: str,
    server_id: str,
    names: list[str],
    ip: str,
    after: tuple[str, ...],
    dns: Sequence[tuple[str, str, str]],
    provider_domain: str | None,
) -> str:
    params = {
        "role": role,
        "names": list(names),
        "user": chain.service.user,
        "domain": chain.service.domain,
        "ip": ip,
        "dns": [{"server_id": s, "user": u, "zone": z} for s, u, z in dns],
        "shared": "wildcard" if provider_domain else None,
        "provider_domain": provider_domain,
    }
    return chain.add(f"ssl.{role}", SSL_ROLE, SEED_ACTION, server_id, params, after)
