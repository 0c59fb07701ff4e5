"""The ``acme`` subclasses: ``replaces`` sent only when set, ``explanationURL`` read, and
``Retry-After`` in both of its forms."""

from __future__ import annotations

from datetime import UTC, datetime

from acme import messages

from handlers.acme_messages import NewOrderReplacing, RenewalInfoExplained, retry_after_s

NOW = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)
IDENTIFIER = messages.Identifier(typ=messages.IDENTIFIER_FQDN, value="shop.test")


def test_replaces_is_sent_only_when_set() -> None:
    plain = NewOrderReplacing(identifiers=[IDENTIFIER]).to_json()
    assert "replaces" not in plain and "profile" not in plain
    renewal = NewOrderReplacing(identifiers=[IDENTIFIER], replaces="aYhb.AIdj", profile="classic")
    assert renewal.to_json()["replaces"] == "aYhb.AIdj"
    assert renewal.to_json()["profile"] == "classic"


def test_the_explanation_url_is_read() -> None:
    window = {"start": "2027-01-01T00:00:00Z", "end": "2027-01-03T00:00:00Z"}
    info = RenewalInfoExplained.from_json(
        {"suggestedWindow": window, "explanationURL": "https://ca.test/why"}
    )
    assert info.explanation_url == "https://ca.test/why"
    assert info.suggested_window.start == datetime(2027, 1, 1, tzinfo=UTC)
    assert RenewalInfoExplained.from_json({"suggestedWindow": window}).explanation_url is None


def test_retry_after_in_seconds_or_as_an_http_date() -> None:
    assert retry_after_s("120", NOW) == 120
    assert retry_after_s("Thu, 03 Dec 2026 13:00:00 GMT", NOW) == 3600
    assert retry_after_s("Thu, 03 Dec 2026 11:00:00 GMT", NOW) == 0  # already past
    assert retry_after_s(None, NOW) is None
    assert retry_after_s("soon", NOW) is None
