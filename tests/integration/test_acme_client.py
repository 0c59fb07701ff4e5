"""The ACME client against Debian's pebble (real certificates over HTTP-01 and DNS-01, an order
resumed by a fresh client from its URL) and against the ACME double (what pebble 2.4 lacks:
``replaces``, ``alreadyReplaced``, 429 with ``Retry-After``, ARI windows, profiles).

Everything listens on 127.0.0.1: pebble's DNS is a static answer run here, HTTP-01 files are
served here; nothing asks the system's resolver.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.x509 import DNSName
from cryptography.x509.verification import PolicyBuilder, Store

from handlers import x509_tools
from handlers.acme_client import AcmeClient
from handlers.acme_values import AcmeProblem, AcmeUnavailable, OrderState
from ops.devtools.pebble import Pebble, free_port
from tests.support.acme_double import AcmeDouble
from tests.support.budget import budget
from tests.support.http01_files import Http01Files
from tests.support.run_leftovers import RUN_MARK, this_run
from tests.support.static_dns import StaticDns

pytestmark = pytest.mark.slow


@dataclass
class Ca:
    pebble: Pebble
    dns: StaticDns
    http: Http01Files


@pytest.fixture
def ca(tmp_path: Path) -> Iterator[Ca]:
    dns, http = StaticDns().start(), Http01Files()
    try:
        http.start()
        pebble = Pebble(
            tmp_path / "pebble",
            http_port=http.port,
            tls_port=free_port(),
            dns_server=dns.address,
            env={RUN_MARK: str(this_run())},
        )
        with pebble:
            yield Ca(pebble, dns, http)
        assert not pebble.running
    finally:
        http.stop()
        dns.stop()


@pytest.fixture
async def acme(ca: Ca) -> AsyncIterator[AcmeClient]:
    client = _client(ca, x509_tools.new_key())
    try:
        await client.register(["ops@shop.test"])
        yield client
    finally:
        client.close()


def _client(ca: Ca, key_pem: str, account_url: str | None = None) -> AcmeClient:
    return AcmeClient(
        ca.pebble.directory_url,
        key_pem,
        account_url=account_url,
        ca_bundle=str(ca.pebble.ca_bundle_path),
        poll_s=0.05,
    )


async def _prove(acme: AcmeClient, ca: Ca, order: OrderState) -> None:
    """Puts every challenge in place (HTTP-01, or DNS-01 for a wildcard) and tells the CA."""
    for url in order.authorizations:
        authorization = await acme.authorization(url)
        if authorization.status == "valid":
            continue
        if authorization.wildcard:
            challenge = authorization.challenge("dns-01")
            assert challenge is not None
            ca.dns.txt[f"_acme-challenge.{authorization.name}"] = [acme.dns01_txt(challenge.token)]
        else:
            challenge = authorization.challenge("http-01")
            assert challenge is not None
            ca.http.files[challenge.token] = acme.key_authorization(challenge.token)
        await acme.answer(challenge.url)
        done = await acme.wait_authorization(url, timeout_s=budget(20))
        assert done.status == "valid", done.error


async def _finish(acme: AcmeClient, order: OrderState, names: list[str]) -> str:
    ready = await acme.wait_order(order.url, timeout_s=budget(20))
    assert ready.status == "ready", ready.error
    key = x509_tools.new_key()
    await acme.finalize(ready, x509_tools.csr_der(key, names))
    valid = await acme.wait_order(order.url, timeout_s=budget(20))
    assert valid.status == "valid" and valid.certificate, valid.error
    return await acme.download(valid.certificate)


def _verify(fullchain: str, roots_path: Path, name: str) -> x509_tools.CertificateFacts:
    """The leaf chains to pebble's root (the root alone trusted) for ``name``."""
    bundle = x509_tools.split_fullchain(fullchain)
    roots = x509.load_pem_x509_certificates(roots_path.read_bytes())
    leaf = x509.load_pem_x509_certificate(bundle.certificate.encode())
    chain = x509.load_pem_x509_certificates(bundle.chain.encode())
    verifier = PolicyBuilder().store(Store(roots)).build_server_verifier(DNSName(name))
    verifier.verify(leaf, chain)
    return x509_tools.facts(bundle.certificate)


async def test_an_http01_certificate_chains_to_pebbles_root(acme: AcmeClient, ca: Ca) -> None:
    names = ["shop.test", "www.shop.test"]
    ca.dns.a.update({name: "127.0.0.1" for name in names})
    order = await acme.new_order(names)
    assert order.status == "pending" and set(order.names) == set(names)
    await _prove(acme, ca, order)
    fullchain = await _finish(acme, order, names)
    facts = _verify(fullchain, ca.pebble.roots_path, "www.shop.test")
    assert set(facts.names) == set(names)
    # pebble's notAfter is inclusive: one second short of the configured period
    assert abs(facts.lifetime - timedelta(seconds=ca.pebble.validity_s)) <= timedelta(seconds=1)
    assert {host.split(":")[0] for host, _ in ca.http.fetched} == set(names)
    assert ca.pebble.orders_created() == 1
    assert ca.pebble.requests("/order-plz") == 1


async def test_a_wildcard_over_dns01(acme: AcmeClient, ca: Ca) -> None:
    order = await acme.new_order(["*.provider.test"])
    authorization = await acme.authorization(order.authorizations[0])
    assert authorization.wildcard and authorization.name == "provider.test"
    assert authorization.challenge("http-01") is None  # a wildcard is DNS-01 only
    await _prove(acme, ca, order)
    fullchain = await _finish(acme, order, ["*.provider.test"])
    facts = _verify(fullchain, ca.pebble.roots_path, "vanity.provider.test")
    assert facts.names == ("*.provider.test",)
    assert ("_acme-challenge.provider.test", "TXT") in ca.dns.queries
    assert ca.http.fetched == []


async def test_a_fresh_client_resumes_the_order_from_its_url(ca: Ca) -> None:
    """A process that placed an order and died: the next one, with the account key and the
    stored order URL only, finishes that order and places none of its own."""
    names = ["resume.test"]
    ca.dns.a["resume.test"] = "127.0.0.1"
    key_pem = x509_tools.new_key()  # what the store keeps, sealed
    first = _client(ca, key_pem)
    try:
        account_url = await first.register()
        placed = await first.new_order(names)
    finally:
        first.close()

    fresh = _client(ca, key_pem)
    try:
        assert await fresh.register() == account_url  # the same account, not a new one
        resumed = await fresh.order(placed.url)
        assert resumed.status == "pending" and resumed.authorizations == placed.authorizations
        await _prove(fresh, ca, resumed)
        fullchain = await _finish(fresh, resumed, names)
    finally:
        fresh.close()
    _verify(fullchain, ca.pebble.roots_path, "resume.test")
    assert ca.pebble.orders_created() == 1


async def test_a_challenge_nobody_serves_fails_its_authorization(acme: AcmeClient, ca: Ca) -> None:
    ca.dns.a["dark.test"] = "127.0.0.1"
    order = await acme.new_order(["dark.test"])
    authorization = await acme.authorization(order.authorizations[0])
    challenge = authorization.challenge("http-01")
    assert challenge is not None
    await acme.answer(challenge.url)  # but no file is served
    failed = await acme.wait_authorization(authorization.url, timeout_s=budget(20))
    assert failed.status == "invalid"
    assert failed.error is not None and failed.error.code == "unauthorized"
    assert (await acme.order(order.url)).status == "invalid"


async def test_an_order_before_register_is_refused_here(tmp_path: Path) -> None:
    client = AcmeClient("https://127.0.0.1:9/dir", x509_tools.new_key())
    try:
        with pytest.raises(RuntimeError, match="register"):
            await client.new_order(["x.test"])
    finally:
        client.close()


async def test_an_unreachable_ca_is_unavailable_not_a_requests_error() -> None:
    client = AcmeClient(f"https://127.0.0.1:{free_port()}/dir", x509_tools.new_key())
    try:
        with pytest.raises(AcmeUnavailable, match="Connection refused"):
            await client.directory()
    finally:
        client.close()


async def test_a_ca_whose_tls_is_not_trusted_is_unavailable(ca: Ca) -> None:
    client = AcmeClient(ca.pebble.directory_url, x509_tools.new_key())  # no CA bundle
    try:
        with pytest.raises(AcmeUnavailable, match="CERTIFICATE_VERIFY_FAILED"):
            await client.directory()
    finally:
        client.close()


# --- the ACME double: what pebble 2.4 cannot show ---------------------------------------


@pytest.fixture
def double() -> Iterator[AcmeDouble]:
    with AcmeDouble() as running:
        yield running


@pytest.fixture
async def acme_at_double(double: AcmeDouble) -> AsyncIterator[AcmeClient]:
    client = AcmeClient(
        double.directory_url, x509_tools.new_key(), ca_bundle=double.ca_bundle_path, poll_s=0.05
    )
    try:
        await client.register()
        yield client
    finally:
        client.close()


async def _issue_at_double(acme: AcmeClient, names: list[str], **order: str | None) -> str:
    placed = await acme.new_order(names, **order)
    for url in placed.authorizations:
        authorization = await acme.authorization(url)
        challenge = authorization.challenge("http-01")
        assert challenge is not None
        await acme.answer(challenge.url)
    return await _finish(acme, placed, names)


async def test_the_directory_offers_ari_and_caa_identities(
    acme_at_double: AcmeClient, double: AcmeDouble
) -> None:
    directory = await acme_at_double.directory()
    assert directory.renewal_info == double.url + "/renewal-info"
    assert directory.caa_identities == ("hostwright-double.test",)
    assert set(directory.profiles) == {"classic", "tlsserver"}


async def test_a_renewal_sends_replaces_and_its_profile(
    acme_at_double: AcmeClient, double: AcmeDouble
) -> None:
    first = await _issue_at_double(acme_at_double, ["shop.test"])
    ari_id = x509_tools.facts(first).ari_id
    assert ari_id is not None
    again = await _issue_at_double(
        acme_at_double, ["shop.test"], replaces=ari_id, profile="tlsserver"
    )
    assert x509_tools.facts(again).common_name is None  # tlsserver: no Common Name
    assert double.orders == 2
    assert double.orders_with_replaces == 1
    assert double.replaced == [ari_id]
    assert double.profiles_seen == [None, "tlsserver"]


async def test_already_replaced_is_a_409_problem(
    acme_at_double: AcmeClient, double: AcmeDouble
) -> None:
    double.replaces_answer = "alreadyReplaced"
    with pytest.raises(AcmeProblem) as refused:
        await acme_at_double.new_order(["shop.test"], replaces="AAAA.AQ")
    assert refused.value.status == 409
    assert refused.value.already_replaced and not refused.value.malformed
    placed = await acme_at_double.new_order(["shop.test"])  # the retry without replaces
    assert placed.status == "pending"
    assert double.orders == 1


async def test_a_malformed_replaces(acme_at_double: AcmeClient, double: AcmeDouble) -> None:
    double.replaces_answer = "malformed"
    with pytest.raises(AcmeProblem) as refused:
        await acme_at_double.new_order(["shop.test"], replaces="AAAA.AQ")
    assert refused.value.malformed and refused.value.status == 400
    assert double.orders == 0


async def test_a_429_carries_its_retry_after(
    acme_at_double: AcmeClient, double: AcmeDouble
) -> None:
    double.rate_limit_next = 3600
    with pytest.raises(AcmeProblem) as refused:
        await acme_at_double.new_order(["shop.test"])
    problem = refused.value
    assert problem.rate_limited and problem.status == 429
    assert problem.retry_after == 3600
    assert "retry after" in problem.detail
    assert (await acme_at_double.new_order(["shop.test"])).status == "pending"  # only the next


async def test_a_429_with_an_http_date(acme_at_double: AcmeClient, double: AcmeDouble) -> None:
    double.rate_limit_next = 7200
    double.retry_after_as_date = True
    with pytest.raises(AcmeProblem) as refused:
        await acme_at_double.new_order(["shop.test"])
    assert refused.value.retry_after is not None
    assert 7190 <= refused.value.retry_after <= 7200


async def test_waiting_for_an_order_honours_its_retry_after(
    acme_at_double: AcmeClient, double: AcmeDouble
) -> None:
    """The order is processing for 1 s and says Retry-After: 1; the client polls every 0.05 s
    unless told otherwise, so honouring it means two or three polls, not twenty."""
    double.processing_s = 1
    placed = await acme_at_double.new_order(["shop.test"])
    for url in placed.authorizations:
        challenge = (await acme_at_double.authorization(url)).challenge("http-01")
        assert challenge is not None
        await acme_at_double.answer(challenge.url)
    key = x509_tools.new_key()
    finalized = await acme_at_double.finalize(placed, x509_tools.csr_der(key, ["shop.test"]))
    assert finalized.status == "processing" and finalized.certificate is None
    polls_before = double.order_polls
    valid = await acme_at_double.wait_order(placed.url, timeout_s=budget(10))
    assert valid.status == "valid" and valid.certificate
    assert double.order_polls - polls_before <= 3


async def test_the_renewal_window_and_its_explanation(
    acme_at_double: AcmeClient, double: AcmeDouble
) -> None:
    start = datetime(2027, 1, 1, tzinfo=UTC)
    double.window = (start, start + timedelta(days=2), "https://ca.test/incident/42")
    window = await acme_at_double.renewal_info("AAAA.AQ")
    assert window is not None
    assert (window.start, window.end) == (start, start + timedelta(days=2))
    assert window.explanation_url == "https://ca.test/incident/42"
    assert window.retry_after_s == 21600
    double.window = (start, start + timedelta(days=2), None)
    assert (await acme_at_double.renewal_info("AAAA.AQ")).explanation_url is None


async def test_no_ari_at_pebble(acme: AcmeClient) -> None:
    directory = await acme.directory()
    assert directory.renewal_info is None and directory.caa_identities == ()
    assert await acme.renewal_info("AAAA.AQ") is None
