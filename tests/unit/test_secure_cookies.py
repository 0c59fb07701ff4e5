"""A cookie is Secure when the public address is https, though the gateway behind a TLS
proxy sees http; and when the request itself came over https."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, cast

import pytest

from gateway.screens.screen_ports import ScreenPorts


def ports(public_url: str | None) -> ScreenPorts:
    unused = cast(Any, None)
    return ScreenPorts(
        ledger=unused,
        views=unused,
        credentials=unused,
        clock=lambda: datetime.now(UTC),
        live=unused,
        signing_key=b"k" * 32,
        public_url=public_url,
    )


@pytest.mark.parametrize(
    ("public_url", "scheme", "secure"),
    [
        ("https://panel.example.com", "http", True),  # TLS ends at the proxy
        ("HTTPS://panel.example.com", "http", True),
        ("http://panel.example.com", "http", False),
        (None, "http", False),
        (None, "https", True),
        ("http://panel.example.com", "https", True),
    ],
)
def test_secure_when_the_public_address_or_the_request_is_https(
    public_url: str | None, scheme: str, secure: bool
) -> None:
    assert ports(public_url).secure_cookies(scheme) is secure
