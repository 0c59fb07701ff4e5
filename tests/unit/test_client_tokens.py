"""The client area's token: it opens the one service it was minted for until its expiry, and
nothing else — not another service, not an altered or re-spelled token, not after its time,
not under another key."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from gateway.screens.client_tokens import TokenRefused, check, mint

KEY = b"k" * 32
NOW = datetime(2026, 12, 3, 21, 0, tzinfo=UTC)
LATER = NOW + timedelta(hours=1)


def refused(service_id: str, token: str | None, now: datetime = NOW, key: bytes = KEY) -> str:
    with pytest.raises(TokenRefused) as caught:
        check(key, service_id, token, now)
    return caught.value.reason


def test_a_token_opens_its_service_until_it_expires() -> None:
    token = mint(KEY, "1001", LATER)
    assert check(KEY, "1001", token, NOW) == LATER
    assert check(KEY, "1001", token, LATER - timedelta(seconds=1)) == LATER
    assert refused("1001", token, now=LATER) == "expired"


def test_a_token_is_url_safe_and_carries_no_service_id() -> None:
    token = mint(KEY, "service-with-a-long-id_42", LATER)
    assert all(c.isalnum() or c in "-_." for c in token)
    assert "service" not in token


def test_another_service_or_another_key_is_refused() -> None:
    token = mint(KEY, "1001", LATER)
    assert refused("1002", token) == "invalid"
    assert refused("10011", token) == "invalid"
    assert refused("1001", token, key=b"x" * 32) == "invalid"


def test_an_altered_token_is_refused_even_one_that_decodes_the_same() -> None:
    token = mint(KEY, "1001", LATER)
    expiry, signature = token.split(".")
    longer = str(int(expiry) + 3600)
    for altered in (
        f"{longer}.{signature}",  # a longer life
        f"0{expiry}.{signature}",  # the same number spelled otherwise
        f"{expiry}.{signature[:-1]}{'A' if signature[-1] != 'A' else 'B'}",  # the spare bits
        f"{expiry}.{signature}=",
        token + "x",
        token.replace(".", ""),
        "",
        None,
        "x" * 500,
        f"{expiry}.{signature}.{signature}",
    ):
        assert refused("1001", altered) == "invalid", altered


def test_an_altered_expired_token_is_invalid_not_expired() -> None:
    """The signature is checked first: an expiry no one signed tells nothing about time."""
    token = mint(KEY, "1001", NOW - timedelta(hours=1))
    assert refused("1001", token) == "expired"
    assert refused("1001", "1." + token.split(".")[1]) == "invalid"
