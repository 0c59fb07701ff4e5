"""SSL's pure rules: the names per role, wildcard coverage, the renewal moment (ARI and the
fallback at ⅓ / ½ of the lifetime left, spread by a hash), the check cadence, the freeze and
the expiry warnings. Every time is passed in; nothing here is random."""

from __future__ import annotations

from collections import Counter
from datetime import datetime, timedelta

import pytest

from domain.errors import InvalidInput
from domain.ssl_policy import (
    AriWindow,
    after_failure,
    covers,
    expiry_threshold_due,
    in_renewal_window,
    names_for,
    next_check,
    renewal_at,
)
from tests.support.ssl_values import CADENCE, T0, facts


def test_the_names_of_each_role() -> None:
    assert names_for("web", "Example.COM.", ["shop.example.com", "www.example.com"]) == (
        "example.com",
        "www.example.com",
        "shop.example.com",
    )
    assert names_for("mail", "example.com") == ("mail.example.com", "webmail.example.com")
    assert names_for("wildcard", "provider.net") == ("*.provider.net",)
    with pytest.raises(InvalidInput, match="ftp"):
        names_for("ftp", "example.com")


@pytest.mark.parametrize(
    ("cert_names", "name", "covered"),
    [
        (["example.com"], "EXAMPLE.com", True),
        (["*.example.com"], "a.example.com", True),
        (["*.example.com"], "example.com", False),
        (["*.example.com"], "a.b.example.com", False),
        (["*.example.com"], "*.example.com", True),
        (["*.example.com"], "a.example.org", False),
        (["www.example.com"], "example.com", False),
        ([], "example.com", False),
    ],
)
def test_a_wildcard_covers_exactly_one_label(
    cert_names: list[str], name: str, covered: bool
) -> None:
    assert covers(cert_names, name) is covered


@pytest.mark.parametrize("days", [90, 64, 45])
def test_without_ari_renewal_is_between_half_and_a_third_of_the_lifetime_left(days: int) -> None:
    lifetime = timedelta(days=days)
    moments = [renewal_at(facts(f"{i:x}", lifetime=lifetime), "cert", None, T0) for i in range(500)]
    lefts = [T0 + lifetime - at for at in moments]
    assert min(lefts) >= lifetime / 3  # never later than ⅓ left
    assert max(lefts) <= lifetime / 2  # never earlier than ½ left
    assert max(lefts) - min(lefts) > lifetime / 7  # spread over the window, not one moment


def test_a_short_lived_certificate_renews_by_half_its_lifetime_left() -> None:
    lifetime = timedelta(hours=160)
    lefts = [
        T0 + lifetime - renewal_at(facts(f"{i:x}", lifetime=lifetime), "c", None, T0)
        for i in range(500)
    ]
    assert lifetime / 2 <= min(lefts) and max(lefts) <= lifetime * 2 / 3


def test_the_moment_is_the_same_on_every_replay_and_differs_per_certificate() -> None:
    one = renewal_at(facts("ab"), "cert-1", None, T0)
    assert one == renewal_at(facts("ab"), "cert-1", None, T0)
    assert one != renewal_at(facts("ab"), "cert-2", None, T0)
    assert one != renewal_at(facts("ac"), "cert-1", None, T0)


def test_with_ari_the_moment_is_inside_the_window() -> None:
    window = AriWindow(T0 + timedelta(days=55), T0 + timedelta(days=57))
    moments = {renewal_at(facts(f"{i:x}"), "cert", window, T0) for i in range(200)}
    assert all(window.start <= at <= window.end for at in moments)
    assert len(moments) == 200


def test_an_ari_window_already_past_means_now() -> None:
    window = AriWindow(T0 - timedelta(days=2), T0 - timedelta(days=1))
    late = T0 + timedelta(minutes=5)
    assert renewal_at(facts(), "cert", window, late) == late
    with pytest.raises(InvalidInput):
        AriWindow(T0, T0 - timedelta(seconds=1))


def test_a_certificate_adopted_late_renews_now_not_in_the_past() -> None:
    late = T0 + timedelta(days=80)
    assert renewal_at(facts(), "cert", None, late) == late


def test_ten_thousand_certificates_of_one_hour_spread_their_renewals() -> None:
    """The busiest renewal hour holds at most twice the average of the hours renewals fall in."""
    per_hour: Counter[datetime] = Counter()
    for i in range(10_000):
        issued = T0 + timedelta(seconds=i * 3600 / 10_000)
        cert = facts(f"{(i * 7919) ^ 0x5DEECE66D:x}", at=issued)
        at = renewal_at(cert, f"certificate/{i}/web", None, issued)
        per_hour[at.replace(minute=0, second=0, microsecond=0)] += 1
    first, last = min(per_hour), max(per_hour)
    hours = int((last - first) / timedelta(hours=1)) + 1
    average = 10_000 / hours
    assert hours > 300  # days of renewals, not one hour
    assert max(per_hour.values()) <= 2 * average


def test_the_cadence_fast_then_recheck_then_active() -> None:
    assert next_check(T0, CADENCE, fast_left=2, issued=False) == T0 + timedelta(seconds=30)
    assert next_check(T0, CADENCE, fast_left=0, issued=False) == T0 + timedelta(hours=1)
    assert next_check(T0, CADENCE, fast_left=0, issued=True) == T0 + timedelta(days=1)
    soon = T0 + timedelta(hours=5)
    assert next_check(T0, CADENCE, fast_left=0, issued=True, renew_at=soon) == soon
    poll = T0 + timedelta(hours=2)
    assert next_check(T0, CADENCE, fast_left=0, issued=True, renew_at=soon, poll_at=poll) == poll
    past = T0 - timedelta(hours=1)
    assert next_check(T0, CADENCE, fast_left=0, issued=True, renew_at=past) == T0


def test_fast_mode_is_n_checks_m_apart() -> None:
    now, checks, left = T0, [], CADENCE.fast_attempts
    while True:
        now = next_check(now, CADENCE, fast_left=left, issued=False)
        checks.append(now)
        if left == 0:
            break
        left -= 1
    gaps = [b - a for a, b in zip([T0, *checks], checks, strict=False)]
    assert gaps == [timedelta(seconds=30)] * 3 + [timedelta(hours=1)]


def test_n_failures_in_a_row_freeze_for_m() -> None:
    assert [after_failure(n, T0, CADENCE) for n in (1, 2)] == [None, None]
    assert after_failure(3, T0, CADENCE) == T0 + timedelta(hours=6)
    assert after_failure(9, T0, CADENCE) == T0 + timedelta(hours=6)


def test_the_renewal_window_the_probe_respects() -> None:
    cert = facts()
    assert not in_renewal_window(cert, T0 + timedelta(days=44))
    assert in_renewal_window(cert, T0 + timedelta(days=46))


def test_each_expiry_threshold_is_warned_once_and_only_the_nearest() -> None:
    not_after = T0 + timedelta(days=60)
    assert expiry_threshold_due(not_after, set(), T0) is None
    at_30 = not_after - timedelta(days=30)
    assert expiry_threshold_due(not_after, set(), at_30) == 30
    assert expiry_threshold_due(not_after, {30}, at_30) is None
    assert expiry_threshold_due(not_after, {30}, not_after - timedelta(days=13)) == 14
    # first seen 5 days before: one warning, at 7
    assert expiry_threshold_due(not_after, set(), not_after - timedelta(days=5)) == 7
    assert expiry_threshold_due(not_after, {7}, not_after - timedelta(days=5)) is None
    assert expiry_threshold_due(not_after, {7}, not_after - timedelta(hours=20)) == 1
    assert expiry_threshold_due(not_after, {1}, not_after + timedelta(days=1)) is None
