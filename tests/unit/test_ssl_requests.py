"""What a caller may ask of a service's SSL, checked before anything is recorded: a custom
certificate's body (named fields only, PEM text, the key never shown), the roles, and Issue
now refused while a rate limit froze the certificate, allowed after a failure freeze."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from domain.certificate import FROZEN_BY_FAILURES, FROZEN_BY_RATE_LIMIT, Certificate
from domain.errors import Conflict, InvalidInput, NotFound
from domain.ssl_requests import check_role, parse_custom, refuse_issue_while_rate_limited
from domain.ssl_types import SslCadence

T0 = datetime(2026, 12, 1, 10, 0, tzinfo=UTC)
KEY = "-----BEGIN PRIVATE KEY-----\nSECRET\n-----END PRIVATE KEY-----\n"


def test_a_custom_body_is_read_and_its_key_never_shown() -> None:
    upload = parse_custom({"certificate": "CERT", "private_key": KEY})
    assert (upload.certificate, upload.chain) == ("CERT", "")
    assert "SECRET" not in repr(upload)


@pytest.mark.parametrize(
    ("body", "named"),
    [
        ({"private_key": KEY}, "certificate"),
        ({"certificate": "CERT", "private_key": "  "}, "private_key"),
        ({"certificate": "CERT", "private_key": KEY, "chain": 3}, "chain"),
        ({"certificate": "CERT", "private_key": KEY, "pfx": "x"}, "pfx"),
    ],
)
def test_a_bad_custom_body_names_the_field_not_its_value(
    body: dict[str, object], named: str
) -> None:
    with pytest.raises(InvalidInput) as refused:
        parse_custom(body)
    assert named in str(refused.value) and "SECRET" not in str(refused.value)


def test_only_web_and_mail_have_certificates_of_their_own() -> None:
    assert check_role("web") == "web" and check_role("mail") == "mail"
    with pytest.raises(NotFound):
        check_role("wildcard")


def _frozen(kind: str) -> Certificate:
    cert = Certificate.seed(
        service_id="1001",
        role="web",
        names=["shop.test"],
        install=None,
        dns_targets=[],
        http01=None,
        expected_addresses=[],
        cadence=SslCadence(),
        now=T0,
        actor="deploy",
    )
    cert.freeze(T0, T0 + timedelta(hours=1), "a test", kind)
    return cert


def test_issue_now_is_refused_under_a_rate_limit_until_it_ends() -> None:
    cert = _frozen(FROZEN_BY_RATE_LIMIT)
    with pytest.raises(Conflict, match="until 2026-12-01 11:00:00 UTC"):
        refuse_issue_while_rate_limited(cert, T0 + timedelta(minutes=30))
    refuse_issue_while_rate_limited(cert, T0 + timedelta(hours=1))  # over: allowed
    refuse_issue_while_rate_limited(_frozen(FROZEN_BY_FAILURES), T0)
