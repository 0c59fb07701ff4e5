"""The certificate tools: facts read from PEM (ARI id, no Common Name), keys and CSRs, and every
reason a customer's certificate is refused — each reason readable and free of PEM."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from handlers import x509_tools
from handlers.x509_tools import CertificateRefused, check_custom
from ops.devtools.mini_ca import Leaf, MiniCa

NOW = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)
NAMES = ["shop.test", "www.shop.test"]


@pytest.fixture(scope="module")
def root() -> MiniCa:
    return MiniCa(now=NOW)


@pytest.fixture(scope="module")
def issuer(root: MiniCa) -> MiniCa:
    return root.intermediate()


@pytest.fixture(scope="module")
def good(issuer: MiniCa) -> Leaf:
    return issuer.leaf(NAMES)


def _validate(root: MiniCa, issuer: MiniCa, leaf: Leaf, **changes: object) -> object:
    arguments: dict[str, object] = {
        "certificate": leaf.certificate_pem,
        "private_key": leaf.key_pem,
        "chain": issuer.certificate_pem,
        "names": NAMES,
        "roots_pem": root.certificate_pem,
        "now": NOW,
    }
    arguments.update(changes)
    return check_custom(**arguments).facts  # type: ignore[arg-type]


def _refusal(root: MiniCa, issuer: MiniCa, leaf: Leaf, **changes: object) -> str:
    with pytest.raises(CertificateRefused) as refused:
        _validate(root, issuer, leaf, **changes)
    reason = refused.value.reason
    assert "-----" not in reason and "PRIVATE" not in reason
    return reason


def test_a_good_certificate_is_accepted_with_its_facts(root, issuer, good) -> None:
    facts = _validate(root, issuer, good)
    assert facts == x509_tools.facts(good.certificate_pem)
    assert facts.names == tuple(NAMES)
    assert facts.common_name == "shop.test"
    assert facts.issuer == "CN=hostwright test intermediate"


def test_a_full_chain_pasted_as_the_certificate_is_accepted(root, issuer, good) -> None:
    fullchain = good.certificate_pem + issuer.certificate_pem
    assert _validate(root, issuer, good, certificate=fullchain, chain="")


def test_unreadable_certificate(root, issuer, good) -> None:
    reason = _refusal(root, issuer, good, certificate="hello")
    assert reason == "the certificate is not readable: no PEM certificate found"


def test_unreadable_chain(root, issuer, good) -> None:
    assert "the chain is not readable" in _refusal(root, issuer, good, chain="garbage")


def test_unreadable_key(root, issuer, good) -> None:
    broken = "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"
    assert _refusal(root, issuer, good, private_key=broken) == (
        "the private key is not a readable PEM private key"
    )


def test_two_keys_in_one_upload(root, issuer, good) -> None:
    reason = _refusal(root, issuer, good, private_key=good.key_pem * 2)
    assert reason == "exactly one PEM private key is expected"


@pytest.mark.parametrize("form", ["pkcs8", "traditional"])
def test_encrypted_key(root, issuer, good, form) -> None:
    key = serialization.load_pem_private_key(good.key_pem.encode(), None)
    encrypted = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8
        if form == "pkcs8"
        else serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.BestAvailableEncryption(b"secret"),
    ).decode()
    reason = _refusal(root, issuer, good, private_key=encrypted)
    assert reason == "the private key is encrypted; upload it without a passphrase"


def test_key_of_another_certificate(root, issuer, good) -> None:
    other = issuer.leaf(NAMES)
    reason = _refusal(root, issuer, good, private_key=other.key_pem)
    assert reason == "the private key does not belong to the certificate"


def test_name_not_covered(root, issuer) -> None:
    leaf = issuer.leaf(["shop.test"])
    reason = _refusal(root, issuer, leaf)
    assert reason == "the certificate does not cover www.shop.test (it covers shop.test)"


def test_a_wildcard_covers_one_label_only(root, issuer) -> None:
    leaf = issuer.leaf(["*.shop.test"])
    assert _validate(root, issuer, leaf, names=["www.shop.test", "mail.shop.test"])
    reason = _refusal(root, issuer, leaf, names=["shop.test", "a.b.shop.test"])
    assert reason.startswith("the certificate does not cover shop.test, a.b.shop.test")


def test_not_yet_valid(root, issuer) -> None:
    leaf = issuer.leaf(NAMES, not_before=NOW + timedelta(days=1))
    assert _refusal(root, issuer, leaf).startswith("the certificate is not valid before 2026-12-04")


def test_expired(root, issuer) -> None:
    leaf = issuer.leaf(
        NAMES, not_before=NOW - timedelta(days=91), not_after=NOW - timedelta(days=1)
    )
    assert _refusal(root, issuer, leaf) == "the certificate expired on 2026-12-02 12:00:00 UTC"


def test_chain_missing_its_intermediate(root, issuer, good) -> None:
    reason = _refusal(root, issuer, good, chain="")
    assert reason.startswith("the certificate's chain does not lead to a trusted root; is the ")
    assert "intermediate chain missing?" in reason


def test_chain_to_an_untrusted_root(root, issuer, good) -> None:
    reason = _refusal(root, issuer, good, roots_pem=MiniCa(now=NOW).certificate_pem)
    assert reason.startswith("the certificate's chain does not lead to a trusted root (")


def test_no_roots_configured(root, issuer, good) -> None:
    reason = _refusal(root, issuer, good, roots_pem="")
    assert reason == "no trusted roots are configured to check the chain against"


def test_ari_id_of_a_serial_with_its_high_bit_set(issuer) -> None:
    leaf = issuer.leaf(NAMES, serial=0x8000000000000001)
    facts = x509_tools.facts(leaf.certificate_pem)
    certificate = x509.load_pem_x509_certificate(leaf.certificate_pem.encode())
    aki = certificate.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    expected_key_id = x509_tools._b64url(aki.key_identifier)
    # DER INTEGER 00 80 00 00 00 00 00 00 01: the 0x00 keeps it positive
    assert facts.ari_id == f"{expected_key_id}.AIAAAAAAAAAB"
    assert facts.serial == "8000000000000001"


def test_ari_id_of_a_serial_without_its_high_bit(issuer) -> None:
    leaf = issuer.leaf(NAMES, serial=0x7F01)
    assert x509_tools.facts(leaf.certificate_pem).ari_id.endswith(".fwE")


def test_a_certificate_without_common_name(issuer) -> None:
    leaf = issuer.leaf(NAMES, common_name=None)
    facts = x509_tools.facts(leaf.certificate_pem)
    assert facts.common_name is None
    assert facts.names == tuple(NAMES)
    assert facts.lifetime == timedelta(days=90, minutes=5)


def test_split_fullchain(issuer, good) -> None:
    bundle = x509_tools.split_fullchain(good.certificate_pem + issuer.certificate_pem)
    assert bundle.certificate == good.certificate_pem
    assert bundle.chain == issuer.certificate_pem


def test_key_matches(issuer, good) -> None:
    assert x509_tools.key_matches(good.certificate_pem, good.key_pem)
    assert not x509_tools.key_matches(good.certificate_pem, issuer.leaf(NAMES).key_pem)


@pytest.mark.parametrize(
    ("kind", "key_type"),
    [("ec-p256", ec.EllipticCurvePrivateKey), ("rsa-2048", rsa.RSAPrivateKey)],
)
def test_new_key_and_its_csr(kind, key_type) -> None:
    pem = x509_tools.new_key(kind)
    assert pem.startswith("-----BEGIN PRIVATE KEY-----")  # PKCS#8
    key = serialization.load_pem_private_key(pem.encode(), None)
    assert isinstance(key, key_type)
    csr = x509.load_der_x509_csr(x509_tools.csr_der(pem, NAMES))
    assert csr.is_signature_valid
    assert list(csr.subject) == []
    san = csr.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == NAMES


@pytest.mark.parametrize("serial", [1, 0x7F, 0x80, 0xFF, 0x8000, 0x8000000000000001, 2**159 - 1])
def test_ari_id_agrees_with_the_acme_package(issuer, serial) -> None:
    """acme's own (private) certID encoder as a second opinion."""
    from acme.client import _renewal_info_path_component

    leaf = issuer.leaf(NAMES, serial=serial)
    certificate = x509.load_pem_x509_certificate(leaf.certificate_pem.encode())
    assert x509_tools.facts(leaf.certificate_pem).ari_id == _renewal_info_path_component(
        certificate
    )
