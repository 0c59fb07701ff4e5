"""Validation of the names and plans that later travel to Hestia as argv and into DNS zones."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from domain.errors import InvalidInput
from domain.hosting_plan import HostingPlan
from domain.names import (
    MAX_DOMAIN_LENGTH,
    RESERVED_USERNAMES,
    normalise_domain,
    validate_label,
    validate_username,
)

NODE_SAFE = re.compile(r"[a-z0-9.-]+")

# --- domains --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("example.com", "example.com"),
        ("Shop.Example.COM", "shop.example.com"),
        ("example.com.", "example.com"),
        ("a-b.example", "a-b.example"),
        ("0.example", "0.example"),
        ("bücher.example", "xn--bcher-kva.example"),
        ("münchen.de", "xn--mnchen-3ya.de"),
        ("例え.jp", "xn--r8jz45g.jp"),
        ("shop.рф", "shop.xn--p1ai"),
    ],
)
def test_domains_are_normalised_to_lowercase_ascii(raw: str, expected: str) -> None:
    assert normalise_domain(raw) == expected


@pytest.mark.parametrize(
    "raw",
    [
        "",
        "localhost",
        "example.com..",
        ".example.com",
        "exa..mple.com",
        "exa mple.com",
        " example.com",
        "example.com ",
        "example.com\n",
        "example.com\t",
        "-a.com",
        "a-.com",
        "a.-com",
        "a_b.com",
        "a.com; rm -rf /",
        "../etc",
        "a.com/../etc",
        "$(reboot).com",
        "`reboot`.com",
        "a;b.com",
        "a'b.com",
        "1.2.3.4",
        "example.123",
        "a" * 64 + ".com",
        "a" * 300 + ".com",
        "*.example.com",
        "example.com:80",
    ],
)
def test_bad_domains_are_refused(raw: str) -> None:
    with pytest.raises(InvalidInput):
        normalise_domain(raw)


@pytest.mark.parametrize("raw", [None, 42, 4.2, True, ["example.com"], {"d": 1}, b"example.com"])
def test_a_domain_must_be_a_string(raw: object) -> None:
    with pytest.raises(InvalidInput, match="string"):
        normalise_domain(raw)


def test_a_label_may_be_63_characters_but_not_64() -> None:
    assert normalise_domain("a" * 63 + ".com") == "a" * 63 + ".com"
    with pytest.raises(InvalidInput, match="63"):
        normalise_domain("a" * 64 + ".com")


def test_a_domain_may_be_253_characters_but_not_254() -> None:
    longest = ".".join(["a" * 63, "b" * 63, "c" * 63, "d" * 61])
    assert len(longest) == MAX_DOMAIN_LENGTH
    assert normalise_domain(longest) == longest
    assert normalise_domain(longest + ".") == longest  # the root dot does not count
    with pytest.raises(InvalidInput, match="253"):
        normalise_domain(".".join(["a" * 63, "b" * 63, "c" * 63, "d" * 62]))


def test_the_limits_apply_after_punycode() -> None:
    # 60 'ü' are 60 characters, but far more than 63 once encoded
    with pytest.raises(InvalidInput):
        normalise_domain("ü" * 60 + ".com")


def test_errors_are_readable_and_name_the_input() -> None:
    with pytest.raises(InvalidInput) as caught:
        normalise_domain("-a.com")
    assert "-a.com" in str(caught.value)
    assert "'-'" in str(caught.value)


@given(st.text(max_size=80))
def test_any_accepted_domain_holds_only_node_safe_characters(raw: str) -> None:
    try:
        domain = normalise_domain(raw)
    except InvalidInput:
        return
    assert NODE_SAFE.fullmatch(domain), domain
    assert len(domain) <= MAX_DOMAIN_LENGTH


@given(
    st.lists(
        st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-.;$`'\" \n/_üß", max_size=20),
        min_size=1,
        max_size=5,
    ).map(".".join)
)
def test_any_accepted_domain_built_from_risky_pieces_is_node_safe(raw: str) -> None:
    try:
        domain = normalise_domain(raw)
    except InvalidInput:
        return
    assert NODE_SAFE.fullmatch(domain), domain


def test_a_name_idna_2003_would_change_is_refused_not_rewritten() -> None:
    # IDNA 2003 maps ß to ss: strasse.de is another domain. Refuse rather than rewrite.
    with pytest.raises(InvalidInput, match="changed"):
        normalise_domain("straße.de")
    assert normalise_domain("xn--strae-oqa.de") == "xn--strae-oqa.de"


def test_invisible_characters_are_refused() -> None:
    with pytest.raises(InvalidInput):
        normalise_domain("ex\u200bample.com")


# --- labels ---------------------------------------------------------------------------------


def test_labels_are_lowercased_and_punycoded() -> None:
    assert validate_label("Shop") == "shop"
    assert validate_label("bücher") == "xn--bcher-kva"
    assert validate_label("a" * 63) == "a" * 63


@pytest.mark.parametrize(
    "raw", ["", "a.b", "-a", "a-", "a b", "a;b", "$(reboot)", "`id`", "a\nb", "../etc", "a" * 64]
)
def test_bad_labels_are_refused(raw: str) -> None:
    with pytest.raises(InvalidInput, match="label"):
        validate_label(raw)


@pytest.mark.parametrize("raw", [None, 7, True])
def test_a_label_must_be_a_string(raw: object) -> None:
    with pytest.raises(InvalidInput):
        validate_label(raw)


# --- usernames ------------------------------------------------------------------------------


@pytest.mark.parametrize("raw", ["ab", "shop1", "shop_1", "shop-1", "a" * 32, "a1"])
def test_good_usernames_pass_unchanged(raw: str) -> None:
    assert validate_username(raw) == raw


@pytest.mark.parametrize(
    "raw",
    [
        "",
        "a",
        "a" * 33,
        "a" * 300,
        "1shop",
        "_shop",
        "-shop",
        "shop-",
        "shop_",
        "Shop",
        "sh.op",
        "$(reboot)",
        "a;b",
        "a`id`",
        "a b",
        "a\nb",
        "../etc",
        "shöp",
    ],
)
def test_bad_usernames_are_refused(raw: str) -> None:
    with pytest.raises(InvalidInput, match="username"):
        validate_username(raw)


@pytest.mark.parametrize("name", sorted(RESERVED_USERNAMES))
def test_reserved_usernames_are_refused(name: str) -> None:
    with pytest.raises(InvalidInput, match="reserved"):
        validate_username(name)


@pytest.mark.parametrize("raw", [None, 7, True, ["shop"]])
def test_a_username_must_be_a_string(raw: object) -> None:
    with pytest.raises(InvalidInput):
        validate_username(raw)


@pytest.mark.parametrize("check", ["username", "label", "package", "php_version"])
def test_a_trailing_newline_is_refused(check: str) -> None:
    with pytest.raises(InvalidInput):
        if check == "username":
            validate_username("shop1\n")
        elif check == "label":
            validate_label("shop\n")
        elif check == "package":
            HostingPlan.parse({"package": "basic\n"})
        else:
            HostingPlan.parse({"php_version": "8.2\n"})


# --- plans ----------------------------------------------------------------------------------


@pytest.mark.parametrize("raw", [None, {}], ids=["missing", "empty"])
def test_a_plan_is_required(raw: object) -> None:
    # WHMCS always knows the product's plan: none at all would sell an unlimited service
    with pytest.raises(InvalidInput, match=r"^plan is required: .*package, disk_mb"):
        HostingPlan.parse(raw)


def test_what_a_plan_leaves_out_is_the_default_package_and_unlimited() -> None:
    plan = HostingPlan.parse({"disk_mb": 500})
    assert plan.package == "default" and plan.disk_mb == 500
    assert plan.mail_accounts is None and plan.php_version is None
    assert HostingPlan.parse({"package": "gold"}) == HostingPlan(package="gold")


def test_a_full_plan_is_typed_and_round_trips() -> None:
    raw = {
        "package": "pro.v2",
        "disk_mb": 0,
        "bandwidth_mb": 1_000_000_000,
        "web_domains": "unlimited",
        "mail_accounts": 50,
        "php_version": "8.2",
    }
    plan = HostingPlan.parse(raw)
    assert plan.disk_mb == 0
    assert plan.bandwidth_mb == 1_000_000_000
    assert plan.web_domains is None
    assert plan.php_version == "8.2"
    assert HostingPlan.parse(plan.to_json()) == plan


@pytest.mark.parametrize(
    ("field", "upper"),
    [("disk_mb", 100_000_000), ("bandwidth_mb", 1_000_000_000), ("cron_jobs", 10_000)],
)
def test_quotas_are_bounded(field: str, upper: int) -> None:
    assert getattr(HostingPlan.parse({field: upper}), field) == upper
    with pytest.raises(InvalidInput, match=field):
        HostingPlan.parse({field: upper + 1})
    with pytest.raises(InvalidInput, match=field):
        HostingPlan.parse({field: -1})


@pytest.mark.parametrize("value", [True, False, 1.0, 1.5, "10", "Unlimited", [1], {"a": 1}])
def test_a_quota_must_be_a_whole_number_not_a_bool(value: object) -> None:
    with pytest.raises(InvalidInput, match="disk_mb"):
        HostingPlan.parse({"disk_mb": value})


@pytest.mark.parametrize(
    "raw", [{"disk_gb": 1}, {"package": "p", "Disk_mb": 1}, {"shell": "/bin/bash"}]
)
def test_unknown_plan_fields_are_refused_by_name(raw: dict[str, object]) -> None:
    with pytest.raises(InvalidInput, match="unknown field"):
        HostingPlan.parse(raw)


@pytest.mark.parametrize(
    "package", ["", "a;b", "$(reboot)", "a b", "../etc", ".hidden", "a" * 65, 7, None]
)
def test_bad_package_names_are_refused(package: object) -> None:
    with pytest.raises(InvalidInput, match="package"):
        HostingPlan.parse({"package": package})


@pytest.mark.parametrize("php", ["8", "8.2.1", "10.0", "4.4", "8.x", 8.2, ""])
def test_bad_php_versions_are_refused(php: object) -> None:
    with pytest.raises(InvalidInput, match="php_version"):
        HostingPlan.parse({"php_version": php})


@pytest.mark.parametrize("raw", ["pro", 5, ["disk_mb"], True])
def test_a_plan_must_be_an_object(raw: object) -> None:
    with pytest.raises(InvalidInput, match="plan"):
        HostingPlan.parse(raw)
