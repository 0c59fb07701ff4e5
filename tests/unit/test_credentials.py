"""Credentials as pure code: which scope grants which route, a per-service principal's bounds,
the token table's lookups, and the process settings' refusals of weak or repeated tokens."""

from __future__ import annotations

import hashlib

import pytest

from gateway.credentials import (
    READ,
    SERVICES,
    STAFF,
    Need,
    Principal,
    TokenTable,
    fingerprint,
    known_token,
    token_digest,
)
from ops.settings import Settings, SettingsError

WHMCS = Principal("whmcs", frozenset({SERVICES}))
STAFF_MEMBER = Principal("staff", frozenset({STAFF}))
DASHBOARD = Principal("grafana", frozenset({READ}))
GOOD = "a" * 32


@pytest.mark.parametrize(
    ("principal", "need", "allowed"),
    [
        (WHMCS, Need(SERVICES, writes=True), True),
        (WHMCS, Need(SERVICES, writes=False), True),
        (WHMCS, Need(STAFF, writes=False), False),
        (WHMCS, Need(STAFF, writes=True), False),
        (STAFF_MEMBER, Need(SERVICES, writes=True), True),
        (STAFF_MEMBER, Need(STAFF, writes=True), True),
        (DASHBOARD, Need(STAFF, writes=False), True),
        (DASHBOARD, Need(SERVICES, writes=False), True),
        (DASHBOARD, Need(SERVICES, writes=True), False),
        (DASHBOARD, Need(STAFF, writes=True), False),
        (Principal("nobody", frozenset()), Need(SERVICES, writes=False), False),
    ],
)
def test_each_scope_grants_its_routes_and_no_others(
    principal: Principal, need: Need, allowed: bool
) -> None:
    assert principal.may(need, {}) is allowed


def test_a_per_service_principal_reaches_its_own_service_only() -> None:
    customer = Principal("customer-42", frozenset({SERVICES}), service_id="42")
    assert customer.may(Need(SERVICES, writes=False), {"service_id": "42"})
    assert not customer.may(Need(SERVICES, writes=False), {"service_id": "43"})
    assert not customer.may(Need(SERVICES, writes=True), {})  # an order names no service
    staff_bound = Principal("x", frozenset({STAFF}), service_id="42")
    assert not staff_bound.may(Need(STAFF, writes=False), {"service_id": "42"})


def test_a_principal_of_the_service_named_none_reaches_no_route_without_a_service_id() -> None:
    # "None" is a valid service id; the list and an order carry no service id at all
    customer = Principal("customer-none", frozenset({SERVICES}), service_id="None")
    assert not customer.may(Need(SERVICES, writes=False), {})
    assert not customer.may(Need(SERVICES, writes=True), {})
    assert customer.may(Need(SERVICES, writes=False), {"service_id": "None"})


def test_the_table_resolves_by_digest_and_keeps_no_token() -> None:
    table = TokenTable.of([known_token("whmcs", {SERVICES}, GOOD)])
    assert table.resolve(GOOD.encode()) == WHMCS
    assert table.resolve(GOOD[:-1].encode()) is None
    assert table.resolve(b"") is None
    assert GOOD not in repr(table)
    assert token_digest(GOOD) == "sha256:" + hashlib.sha256(GOOD.encode()).hexdigest()


def test_the_table_finds_a_credential_by_name_and_fingerprint_only() -> None:
    table = TokenTable.of([known_token("whmcs", {SERVICES}, GOOD)])
    key = b"k" * 32
    signed = fingerprint(key, token_digest(GOOD))
    assert GOOD not in signed and token_digest(GOOD)[7:] not in signed
    assert table.principal_named("whmcs", signed, key) == WHMCS
    assert table.principal_named("staff", signed, key) is None  # another name
    assert table.principal_named("whmcs", fingerprint(key, token_digest("x" * 40)), key) is None
    assert table.principal_named("whmcs", signed, b"o" * 32) is None  # another key
    assert table.principal_named("whmcs", "", key) is None


def test_the_table_refuses_a_name_or_a_token_given_twice() -> None:
    with pytest.raises(ValueError, match="whmcs"):
        TokenTable.of([known_token("whmcs", {SERVICES}, GOOD), known_token("whmcs", {READ}, "b")])
    with pytest.raises(ValueError, match="same token"):
        TokenTable.of([known_token("a", {SERVICES}, GOOD), known_token("b", {READ}, GOOD)])


@pytest.mark.parametrize("variable", ["HOSTWRIGHT_API_TOKEN", "HOSTWRIGHT_STAFF_TOKEN"])
@pytest.mark.parametrize("token", ["", "short", "x" * 31])
def test_a_short_token_is_refused_at_start(variable: str, token: str) -> None:
    with pytest.raises(SettingsError, match=f"^{variable} must be at least 32 characters") as err:
        Settings.load({variable: token})
    assert token not in str(err.value) or not token


def test_tokens_of_32_characters_are_taken_and_must_differ() -> None:
    settings = Settings.load({"HOSTWRIGHT_API_TOKEN": GOOD, "HOSTWRIGHT_STAFF_TOKEN": "b" * 32})
    assert (settings.api_token, settings.staff_token) == (GOOD, "b" * 32)
    assert "b" * 32 not in repr(settings)
    with pytest.raises(SettingsError, match="must differ"):
        Settings.load({"HOSTWRIGHT_API_TOKEN": GOOD, "HOSTWRIGHT_STAFF_TOKEN": GOOD})
