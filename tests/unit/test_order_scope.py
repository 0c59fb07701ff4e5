"""``check_order``: at intake, every order a deploy would refuse is refused (InvalidInput),
against the provider's real settings."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from domain.commands import OrderService, parse_order
from domain.errors import InvalidInput
from domain.provider_settings import ProviderSettings, check_order

NOW = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)
PROVIDER = ProviderSettings("hosted.example", "provmail", "provdns")


def order(mode: str = "vanity", domain: str = "blog.hosted.example", **extra: Any) -> OrderService:
    body = {
        "service_id": 1,
        "client_id": 1,
        "mode": mode,
        "domain": domain,
        "plan": {"package": "default"},
        **extra,
    }
    if mode == "vanity":
        body.setdefault("label", "blog")
    return parse_order(body, now=NOW, actor="whmcs")


@pytest.mark.parametrize(
    ("command", "message"),
    [
        (order(domain="other.example.com"), r"<label>\.hosted\.example \(blog\.hosted\.example"),
        (order(domain="blog.example.net"), r"<label>\.hosted\.example"),
        (order(domain="blog.sub.hosted.example"), r"<label>\.hosted\.example"),
        (order(label="www", domain="www.hosted.example"), "reserved"),
        (order(username="provdns"), "shared users"),
        (order("split", "hosted.example"), "provider's own domain"),
        (order("split", "mail.hosted.example"), "provider's own domain hosted.example"),
        (order("unified", "free.hosted.example"), "provider's own domain hosted.example"),
    ],
)
def test_what_a_deploy_would_refuse_is_refused_at_intake(
    command: OrderService, message: str
) -> None:
    with pytest.raises(InvalidInput, match=message):
        check_order(command, PROVIDER)


def test_a_vanity_order_needs_a_configured_provider_domain() -> None:
    with pytest.raises(InvalidInput, match="no vanity domain is configured"):
        check_order(order(), None)


def test_valid_orders_pass() -> None:
    check_order(order(), PROVIDER)
    check_order(order("split", "shop.example.com"), PROVIDER)
    check_order(order("split", "shop.example.com"), None)
