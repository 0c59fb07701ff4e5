"""The ``ssl`` role's deploy step: says a service's certificate is wanted, and nothing more.

``ssl_actions(book, cadence, clock)`` gives the actions of ``RoleHandler("ssl")``; its one
action, ``seed_certificate`` (params in domain/ssl_plan.py), consumes the step's params and
the Certificate (through the ``CertificateBook``) and emits:

- ``Certificate.Seeded`` (fast mode: due at once) when the service has none for the role; a
  vanity site is seeded ``shared`` and the provider's wildcard is seeded too when it is not;
- ``Certificate.IssueRequested`` (actor ``deploy``) when it has one (a redeploy, a verify &
  repair): looked at again at once, in fast mode; a current certificate of ours is installed
  again where the node lacks it, not ordered anew (domain/certificate.py);
- nothing for a custom certificate (the customer's) or a retired one.

It never opens SSH (the driver is only asked its server id) and never waits for the CA: the
SSL desk (ops/services/ssl.py) does the rest, so the service goes active at once. Outputs
``{"certificate": "<id>"}``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import datetime
from typing import Any

from domain.certificate import DEPLOY_ACTOR, Certificate, certificate_uuid, wildcard_uuid
from domain.ssl_types import DnsTarget, Http01Spot, InstallTarget, SslCadence
from handlers.ssl_ports import CertificateBook
from handlers.step import NodeDriver, StepAction, StepLog, StepOutcome, StepParamsError

ACTOR = DEPLOY_ACTOR


def ssl_actions(
    book: CertificateBook, cadence: Callable[[], SslCadence], clock: Callable[[], datetime]
) -> dict[str, StepAction]:
    """The ``ssl`` role's actions, bound to the book, the SSL cadence and the clock."""

    async def seed_certificate(
        driver: NodeDriver, params: dict[str, Any], inputs: dict[str, Any], log: StepLog
    ) -> StepOutcome:
        seeds = _seeds(driver.server_id, params)
        now, pace = clock(), cadence()
        changed = False
        for seed in seeds:
            changed |= await asyncio.to_thread(_record, book, seed, now, pace)
        cert_id = seeds[0].cert_id
        log.note(f"certificate {cert_id}: {'wanted' if changed else 'left as it is'}")
        return StepOutcome(changed=changed, outputs={"certificate": str(cert_id)})

    return {"seed_certificate": seed_certificate}


class _Seed:
    """One certificate the step wants: its id and how to seed it."""

    def __init__(self, cert_id: Any, make: Callable[[datetime, SslCadence], Certificate]) -> None:
        self.cert_id = cert_id
        self.make = make


def _record(book: CertificateBook, seed: _Seed, now: datetime, cadence: SslCadence) -> bool:
    def decide(cert: Certificate | None) -> Certificate | None:
        if cert is None:
            return seed.make(now, cadence)
        if cert.retired or cert.mode == "custom" or cert.role == "wildcard":
            return None  # the wildcard is renewed for every vanity site by the desk alone
        cert.request_issue(now, ACTOR, cadence)
        return cert

    saved = book.update(seed.cert_id, decide, f"certificate {seed.cert_id} kept changing")
    return saved is not None


def _seeds(server_id: str, params: dict[str, Any]) -> list[_Seed]:
    try:
        role, names = str(params["role"]), [str(n) for n in params["names"]]
        user, domain, ip = str(params["user"]), str(params["domain"]), str(params["ip"])
        owner = str(params["owner"])
        zones = [
            DnsTarget(str(d["server_id"]), str(d["user"]), str(d["zone"])) for d in params["dns"]
        ]
        provider_domain = params.get("provider_domain") if params.get("shared") else None
    except (KeyError, TypeError) as exc:
        raise StepParamsError(f"seed_certificate: {exc!r}") from exc
    if role not in ("web", "mail"):
        raise StepParamsError(f"seed_certificate: no certificate role {role!r}")
    install = InstallTarget(server_id, "web" if role == "web" else "mail", user, domain)
    http01 = Http01Spot(server_id, user, f"/home/{user}/web/{domain}/public_html")

    def own(now: datetime, cadence: SslCadence) -> Certificate:
        return Certificate.seed(
            service_id=owner,
            role=role,
            names=names,
            install=install,
            dns_targets=zones,
            http01=http01 if role == "web" else None,  # mail names prove by DNS-01
            expected_addresses=[ip],
            cadence=cadence,
            now=now,
            actor=ACTOR,
            shared=provider_domain is not None,
            provider_domain=provider_domain,
        )

    seeds = [_Seed(certificate_uuid(owner, role), own)]
    if provider_domain is not None:
        seeds.append(_Seed(wildcard_uuid(provider_domain), _wildcard(str(provider_domain), zones)))
    return seeds


def _wildcard(
    provider_domain: str, zones: list[DnsTarget]
) -> Callable[[datetime, SslCadence], Certificate]:
    def make(now: datetime, cadence: SslCadence) -> Certificate:
        return Certificate.seed(
            service_id=None,
            role="wildcard",
            names=[f"*.{provider_domain}"],
            install=None,
            dns_targets=zones,
            http01=None,
            expected_addresses=[],
            cadence=cadence,
            now=now,
            actor=ACTOR,
            provider_domain=provider_domain,
        )

    return make
