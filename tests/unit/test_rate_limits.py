"""Let's Encrypt's limits as the model keeps them: GCRA buckets, the buckets an order spends
from, all-or-nothing admission, and registered domains by the Public Suffix List (checked
against the list's own test cases, from Debian's publicsuffix package)."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from domain.rate_limits import (
    AUTHZ_FAILURES,
    CERTIFICATES_PER_DOMAIN,
    ORDERS_PER_ACCOUNT,
    SAME_NAMES,
    PublicSuffixRules,
    authz_keys_for,
    decide_admission,
    exhausted_until,
    keys_for,
    registered_domain,
    spend,
)
from domain.ssl_types import OrderIntent
from ops.adapters.public_suffix import DEBIAN_LIST, PublicSuffixListMissing, public_suffix_rules

T0 = datetime(2026, 12, 1, 10, 0, tzinfo=UTC)
ACCOUNT = "https://acme.example/acct/1"
PSL_TESTS = Path("/usr/share/doc/publicsuffix/examples/test_psl.txt")
SMALL_LIST = """
// a comment
com
uk.com
*.ck
!www.ck
jp
*.kobe.jp
!city.kobe.jp
公司.cn
cn
"""


def intent(*names: str, replaces: str | None = None) -> OrderIntent:
    rules = PublicSuffixRules.parse(SMALL_LIST)
    domains = tuple(dict.fromkeys(d for n in names if (d := registered_domain(n, rules))))
    return OrderIntent(names=names, registered_domains=domains, replaces=replaces)


def test_a_bucket_allows_its_capacity_at_once_then_one_per_interval() -> None:
    tat = None
    for _ in range(5):
        answer = spend(tat, SAME_NAMES, T0)
        assert answer.allowed
        tat = answer.tat
    refused = spend(tat, SAME_NAMES, T0)
    assert not refused.allowed
    assert refused.retry_at == T0 + timedelta(days=7) / 5
    assert refused.tat == tat  # a refusal spends nothing
    assert spend(tat, SAME_NAMES, T0 + timedelta(days=7) / 5).allowed


def test_a_look_takes_no_token() -> None:
    answer = spend(None, AUTHZ_FAILURES, T0, cost=0)
    assert answer.allowed and answer.tat == T0


def test_the_51st_certificate_for_one_registered_domain_in_7_days_is_refused() -> None:
    tats: dict[str, datetime | None] = {}
    now = T0
    for i in range(50):
        order = intent(f"shop{i}.example.com", f"www.shop{i}.example.com")
        decision = decide_admission(keys_for(order, ACCOUNT), [], tats, now)
        assert decision.admission.allowed, (i, decision.admission.reason)
        tats.update(decision.spent)
        now += timedelta(minutes=1)
    fifty_first = keys_for(intent("shop50.example.com"), ACCOUNT)
    refused = decide_admission(fifty_first, [], tats, now).admission
    assert not refused.allowed
    assert refused.reason is not None
    assert "50 certificates per registered domain every 7 days" in refused.reason
    # a token comes back 7 days / 50 = 201.6 minutes after the first was spent
    assert refused.retry_at == T0 + timedelta(minutes=201.6)
    just_before = refused.retry_at - timedelta(seconds=1)
    assert not decide_admission(fifty_first, [], tats, just_before).admission.allowed
    assert decide_admission(fifty_first, [], tats, refused.retry_at).admission.allowed


def test_a_domain_spread_over_the_week_refills_as_lets_encrypt_does() -> None:
    """A token bucket, not a sliding window: 50 orders 3 hours apart leave room for more."""
    tats: dict[str, datetime | None] = {}
    for i in range(51):
        at = T0 + timedelta(hours=3 * i)
        decision = decide_admission(keys_for(intent(f"s{i}.example.com"), ACCOUNT), [], tats, at)
        assert decision.admission.allowed
        tats.update(decision.spent)


def test_another_registered_domain_is_not_refused_meanwhile() -> None:
    tats: dict[str, datetime | None] = {}
    for i in range(50):
        tats.update(
            decide_admission(keys_for(intent(f"s{i}.example.com"), ACCOUNT), [], tats, T0).spent
        )
    assert not decide_admission(
        keys_for(intent("x.example.com"), ACCOUNT), [], tats, T0
    ).admission.allowed
    assert decide_admission(
        keys_for(intent("x.example.uk.com"), ACCOUNT), [], tats, T0
    ).admission.allowed


def test_a_refused_order_spends_nothing() -> None:
    tats: dict[str, datetime | None] = {}
    for _ in range(5):
        tats.update(
            decide_admission(keys_for(intent("a.example.com"), ACCOUNT), [], tats, T0).spent
        )
    before = dict(tats)
    decision = decide_admission(keys_for(intent("a.example.com"), ACCOUNT), [], tats, T0)
    assert not decision.admission.allowed and "exact set of names" in (
        decision.admission.reason or ""
    )
    assert decision.spent == {} and tats == before


def test_an_ari_renewal_with_replaces_spends_from_no_bucket() -> None:
    assert keys_for(intent("a.example.com", replaces="aki.serial"), ACCOUNT) == []
    keys = keys_for(intent("b.example.com", "a.example.com"), ACCOUNT)
    assert [k.limit for k in keys] == [ORDERS_PER_ACCOUNT, CERTIFICATES_PER_DOMAIN, SAME_NAMES]
    assert keys == keys_for(intent("a.example.com", "B.example.com"), ACCOUNT)  # a set


def test_the_sixth_failed_authorization_in_an_hour_is_refused() -> None:
    (bucket,) = authz_keys_for(["a.example.com"], ACCOUNT)
    tat = None
    for minute in range(5):
        answer = spend(tat, AUTHZ_FAILURES, T0 + timedelta(minutes=minute))
        assert answer.allowed
        tat = answer.tat
    sixth = spend(tat, AUTHZ_FAILURES, T0 + timedelta(minutes=5))
    assert not sixth.allowed
    # and an order for that name is refused until a token is back
    look = decide_admission([], [bucket], {bucket.key: tat}, T0 + timedelta(minutes=5))
    assert not look.admission.allowed
    assert look.admission.retry_at == T0 + timedelta(minutes=12)
    assert "failed authorizations per name every hour" in (look.admission.reason or "")


def test_a_bucket_the_ca_said_is_empty_refuses_until_then() -> None:
    until = T0 + timedelta(hours=2)
    tat = exhausted_until(until, ORDERS_PER_ACCOUNT)
    assert not spend(tat, ORDERS_PER_ACCOUNT, until - timedelta(seconds=1)).allowed
    assert spend(tat, ORDERS_PER_ACCOUNT, until).allowed


@pytest.mark.parametrize(
    ("name", "registered"),
    [
        ("example.com", "example.com"),
        ("a.b.example.com", "example.com"),
        ("*.example.com", "example.com"),
        ("Shop.Example.UK.com", "example.uk.com"),
        ("com", None),
        ("uk.com", None),
        ("c.ck", None),
        ("b.c.ck", "b.c.ck"),
        ("www.ck", "www.ck"),
        ("a.www.ck", "www.ck"),
        ("city.kobe.jp", "city.kobe.jp"),
        ("a.c.kobe.jp", "a.c.kobe.jp"),
        ("example.unlisted", "example.unlisted"),
        ("食狮.公司.cn", "食狮.公司.cn"),
        ("www.xn--85x722f.xn--55qx5d.cn", "xn--85x722f.xn--55qx5d.cn"),
        (".example.com", None),
        ("", None),
    ],
)
def test_registered_domains_by_a_small_list(name: str, registered: str | None) -> None:
    assert registered_domain(name, PublicSuffixRules.parse(SMALL_LIST)) == registered


_CASE = re.compile(r"^checkPublicSuffix\((null|'[^']*'), (null|'[^']*')\);")


def _psl_cases() -> list[tuple[str, str | None]]:
    cases = []
    for line in PSL_TESTS.read_text(encoding="utf-8").splitlines():
        match = _CASE.match(line)
        if match and match.group(1) != "null":
            expected = None if match.group(2) == "null" else match.group(2).strip("'")
            cases.append((match.group(1).strip("'"), expected))
    return cases


@pytest.mark.skipif(not PSL_TESTS.exists(), reason="Debian's publicsuffix examples not present")
def test_the_debian_list_passes_the_lists_own_tests() -> None:
    rules = public_suffix_rules()
    cases = _psl_cases()
    assert len(cases) > 70
    wrong = [(name, want, registered_domain(name, rules)) for name, want in cases]
    assert [w for w in wrong if (w[1].lower() if w[1] else None) != w[2]] == []


def test_the_adapter_reads_the_list_once_and_names_the_package_when_missing(
    tmp_path: Path,
) -> None:
    assert DEBIAN_LIST.exists()  # CI installs publicsuffix (.ci/run)
    assert public_suffix_rules() is public_suffix_rules()
    with pytest.raises(PublicSuffixListMissing, match="publicsuffix"):
        public_suffix_rules(tmp_path / "absent.dat")
