"""The ssl role's ``seed_certificate`` step: Seeded the first time, IssueRequested by the
deploy after that, nothing for a custom certificate; a vanity site is seeded shared and the
provider's wildcard once; and the node is never dialled (the driver answers nothing)."""

from __future__ import annotations

from typing import Any

import pytest

from domain.certificate import certificate_uuid, wildcard_uuid
from domain.deploy_plan import plan_deploy
from handlers.ssl_steps import ssl_actions
from handlers.step import NodeDriver, StepLog, StepParamsError
from tests.fakes.certificate_book import MemoryCertificateBook
from tests.support.plans import IPS, PROVIDER, SPLIT, by_key, facts, vanity
from tests.support.ssl_values import CADENCE, T0
from tests.support.ssl_values import facts as cert_facts


class NoSshDriver:
    """Knows its server id; any other use would be a node call, which the step must not make."""

    def __init__(self, server_id: str) -> None:
        self.server_id = server_id

    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"the seed step used the node: {name}")


def _params(step: str, service: Any = None, provider: Any = None) -> dict[str, Any]:
    steps = plan_deploy(service or facts(), SPLIT, provider, IPS, ssl=True)
    return dict(by_key(steps)[step].params)


async def _seed(book: MemoryCertificateBook, params: dict[str, Any], server: str) -> Any:
    action = ssl_actions(book, lambda: CADENCE, lambda: T0)["seed_certificate"]
    driver: NodeDriver = NoSshDriver(server)  # type: ignore[assignment]
    return await action(driver, params, {}, StepLog())


async def test_the_first_deploy_seeds_the_web_certificate() -> None:
    book = MemoryCertificateBook()
    outcome = await _seed(book, _params("ssl.web"), "web1")
    cert_id = certificate_uuid("42", "web")
    assert outcome.changed and outcome.outputs == {"certificate": str(cert_id)}
    assert book.recorded == ["Certificate.Seeded"]
    cert = book.certificate(cert_id)
    assert cert is not None and cert.mode == "auto"
    assert cert.names == ["shop.example.com", "www.shop.example.com"]
    assert cert.expected_addresses == [IPS["web1"]]
    target, spot = cert.install_target, cert.http01_spot
    assert target is not None and (target.server_id, target.kind) == ("web1", "web")
    assert spot is not None and spot.docroot.endswith("/web/shop.example.com/public_html")
    assert [t.server_id for t in cert.dns01_targets] == ["dns1", "dns2"]
    assert cert.due(T0)


async def test_mail_proves_by_dns01_only() -> None:
    book = MemoryCertificateBook()
    await _seed(book, _params("ssl.mail"), "mail1")
    cert = book.certificate(certificate_uuid("42", "mail"))
    assert cert is not None and cert.http01_spot is None
    assert cert.names == ["mail.shop.example.com", "webmail.shop.example.com"]
    assert cert.install_target is not None and cert.install_target.kind == "mail"


async def test_a_redeploy_asks_again_and_a_custom_certificate_is_left_alone() -> None:
    book = MemoryCertificateBook()
    params = _params("ssl.web")
    await _seed(book, params, "web1")
    await _seed(book, params, "web1")
    assert book.recorded == ["Certificate.Seeded", "Certificate.IssueRequested"]
    cert_id = certificate_uuid("42", "web")

    def custom(cert: Any) -> Any:
        cert.upload_custom(
            T0,
            certificate="PEM",
            chain="",
            key_sealed="sealed",
            facts=cert_facts(),
            actor="customer",
        )
        return cert

    book.update(cert_id, custom, "busy")
    book.recorded.clear()
    outcome = await _seed(book, params, "web1")
    assert not outcome.changed and book.recorded == []


async def test_a_vanity_site_is_served_the_wildcard_seeded_once() -> None:
    book = MemoryCertificateBook()
    params = _params("ssl.web", vanity(), PROVIDER)
    await _seed(book, params, "web1")
    site = book.certificate(certificate_uuid("42", "web"))
    wildcard = book.certificate(wildcard_uuid("example.net"))
    assert site is not None and site.mode == "shared"
    assert wildcard is not None and wildcard.names == ["*.example.net"]
    assert [t.zone for t in wildcard.dns01_targets] == ["example.net", "example.net"]
    book.recorded.clear()
    ann = facts("vanity", service_id="43", domain="ann.example.net", label="ann")
    await _seed(book, _params("ssl.web", ann, PROVIDER), "web1")
    assert book.recorded == ["Certificate.Seeded"]  # ann's site; the wildcard is there


async def test_bad_params_are_a_permanent_failure() -> None:
    params = _params("ssl.web")
    del params["names"]
    with pytest.raises(StepParamsError):
        await _seed(MemoryCertificateBook(), params, "web1")
