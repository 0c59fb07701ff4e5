"""CAA (RFC 8659) as ``caa_permits`` reads it: the closest non-empty set decides; ``issue``
and ``issuewild``; parameters (RFC 8657 ``accounturi`` and ``validationmethods``, unknown
ones ignored, malformed ones permitting nothing); a critical unknown property; a CA with no
identity."""

from __future__ import annotations

import pytest

from domain.ssl_policy import caa_permits
from domain.ssl_types import CaaRecord, CaaSet

LE = frozenset({"letsencrypt.org"})
ACCOUNT = "https://x/1"


def chain(*sets: tuple[str, list[tuple[int, str, str]]]) -> list[CaaSet]:
    return [
        CaaSet(name, tuple(CaaRecord(flags, tag, value) for flags, tag, value in records))
        for name, records in sets
    ]


def test_no_caa_anywhere_permits_any_ca() -> None:
    assert (
        caa_permits(chain(("www.example.com", []), ("example.com", [])), LE, wildcard=False) is None
    )
    assert caa_permits([], frozenset(), wildcard=True) is None


def test_the_closest_set_decides_not_the_apex() -> None:
    sets = chain(
        ("www.example.com", [(0, "issue", "letsencrypt.org")]),
        ("example.com", [(0, "issue", "other.example")]),
    )
    assert caa_permits(sets, LE, wildcard=False) is None
    walked_up = chain(("www.example.com", []), ("example.com", [(0, "issue", "other.example")]))
    reason = caa_permits(walked_up, LE, wildcard=False)
    assert reason is not None
    assert "example.com" in reason and "other.example" in reason


def test_parameters_case_and_a_trailing_dot_do_not_hide_the_issuer() -> None:
    sets = chain(("example.com", [(0, "ISSUE", " LetsEncrypt.org; accounturi=https://x/1")]))
    assert caa_permits(sets, LE, wildcard=False, account_uri=ACCOUNT) is None
    dotted = chain(("example.com", [(0, "issue", " LetsEncrypt.org. ; accounturi=https://x/1")]))
    assert caa_permits(dotted, LE, wildcard=False, account_uri=ACCOUNT) is None
    upper = frozenset({"LetsEncrypt.ORG."})
    assert caa_permits(dotted, upper, wildcard=False, account_uri=ACCOUNT) is None


def test_an_empty_issue_forbids_every_ca() -> None:
    reason = caa_permits(chain(("example.com", [(0, "issue", ";")])), LE, wildcard=False)
    assert reason is not None and "forbids every CA" in reason


def test_a_wildcard_reads_issuewild_first() -> None:
    sets = chain(
        ("example.com", [(0, "issue", "letsencrypt.org"), (0, "issuewild", "other.example")])
    )
    assert caa_permits(sets, LE, wildcard=False) is None
    reason = caa_permits(sets, LE, wildcard=True)
    assert reason is not None and "wildcard" in reason
    only_issue = chain(("example.com", [(0, "issue", "letsencrypt.org")]))
    assert caa_permits(only_issue, LE, wildcard=True) is None
    issue_elsewhere = chain(("example.com", [(0, "issue", "other.example")]))
    assert caa_permits(issue_elsewhere, LE, wildcard=True) is not None
    only_wild = chain(("example.com", [(0, "issuewild", "other.example")]))
    assert caa_permits(only_wild, LE, wildcard=False) is None  # issuewild ignored: no issue
    assert caa_permits(only_wild, LE, wildcard=True) is not None
    wild_ok = chain(("example.com", [(0, "issue", ";"), (0, "issuewild", "letsencrypt.org")]))
    assert caa_permits(wild_ok, LE, wildcard=True) is None
    assert caa_permits(wild_ok, LE, wildcard=False) is not None


def test_iodef_alone_permits() -> None:
    assert (
        caa_permits(chain(("example.com", [(0, "iodef", "mailto:a@b")])), LE, wildcard=False)
        is None
    )


@pytest.mark.parametrize("flags", [128, 129, 255])
def test_a_critical_unknown_property_refuses(flags: int) -> None:
    sets = chain(("example.com", [(0, "issue", "letsencrypt.org"), (flags, "tbs", "x")]))
    reason = caa_permits(sets, LE, wildcard=False)
    assert reason is not None and "critical" in reason and "tbs" in reason


def test_a_non_critical_unknown_property_is_ignored() -> None:
    sets = chain(("example.com", [(0, "issue", "letsencrypt.org"), (0, "tbs", "x")]))
    assert caa_permits(sets, LE, wildcard=False) is None
    known = chain(("example.com", [(0, "issue", "letsencrypt.org"), (128, "iodef", "mailto:a")]))
    assert caa_permits(known, LE, wildcard=False) is None
    critical_issue = chain(("example.com", [(128, "issue", "letsencrypt.org")]))
    assert caa_permits(critical_issue, LE, wildcard=False) is None


def test_a_ca_without_identity_is_refused_by_any_issue_set() -> None:
    sets = chain(("example.com", [(0, "issue", "letsencrypt.org")]))
    reason = caa_permits(sets, frozenset(), wildcard=False)
    assert reason is not None and "names no CAA identity" in reason
    assert caa_permits(chain(("example.com", [])), frozenset(), wildcard=False) is None


def test_accounturi_permits_only_our_account() -> None:
    sets = chain(("example.com", [(0, "issue", "letsencrypt.org; accounturi=https://x/1")]))
    assert caa_permits(sets, LE, wildcard=False, account_uri="https://x/1") is None
    other = caa_permits(sets, LE, wildcard=False, account_uri="https://x/2")
    assert other is not None and "https://x/1" in other and "https://x/2" in other
    unknown = caa_permits(sets, LE, wildcard=False)  # no account registered yet
    assert unknown is not None and "not registered yet" in unknown
    prefix = chain(("example.com", [(0, "issue", "letsencrypt.org; accounturi=https://x/")]))
    assert caa_permits(prefix, LE, wildcard=False, account_uri="https://x/1") is not None


def test_any_one_property_for_our_ca_may_permit() -> None:
    sets = chain(
        (
            "example.com",
            [
                (0, "issue", "letsencrypt.org; accounturi=https://x/9"),
                (0, "issue", "letsencrypt.org; accounturi=https://x/1"),
            ],
        )
    )
    assert caa_permits(sets, LE, wildcard=False, account_uri="https://x/1") is None
    assert caa_permits(sets, LE, wildcard=False, account_uri="https://x/2") is not None


@pytest.mark.parametrize(
    ("methods", "method", "permits"),
    [
        ("http-01", "http-01", True),
        ("http-01", "dns-01", False),
        ("dns-01,http-01", "dns-01", True),
        ("dns-01", "http-01", False),
        ("tls-alpn-01", "http-01", False),
        ("http-01", None, False),
    ],
)
def test_validationmethods_must_list_the_method_we_use(
    methods: str, method: str | None, permits: bool
) -> None:
    sets = chain(("example.com", [(0, "issue", f"letsencrypt.org; validationmethods={methods}")]))
    reason = caa_permits(sets, LE, wildcard=False, method=method)
    assert (reason is None) is permits
    if not permits:
        assert reason is not None and methods.split(",")[0] in reason


def test_both_parameters_must_hold_and_white_space_is_allowed() -> None:
    value = "letsencrypt.org ; accounturi = https://x/1 ;\tvalidationmethods=dns-01"
    sets = chain(("example.com", [(0, "issue", value)]))
    assert caa_permits(sets, LE, wildcard=False, account_uri="https://x/1", method="dns-01") is None
    assert caa_permits(sets, LE, wildcard=False, account_uri="https://x/1", method="http-01")
    assert caa_permits(sets, LE, wildcard=False, account_uri="https://x/2", method="dns-01")


def test_an_unknown_parameter_is_ignored() -> None:
    sets = chain(("example.com", [(0, "issue", "letsencrypt.org; policy=ev; x-future=1")]))
    assert caa_permits(sets, LE, wildcard=False, method="http-01") is None


@pytest.mark.parametrize(
    "value",
    [
        "letsencrypt.org; accounturi",  # no "="
        "letsencrypt.org; =https://x/1",  # no tag
        "letsencrypt.org; accounturi=https://x/1;",  # a ";" with no parameter after it
        "letsencrypt.org; accounturi=https://x/1; accounturi=https://x/2",  # twice
        "letsencrypt.org; accounturi=https://x/1 extra",  # a space inside a value
        "letsencrypt.org; -bad=1",  # a tag must start with a letter or digit
        "letsencrypt.org; validationmethods=http-01,",  # an empty method
        "letsencrypt..org",  # an empty label
        "lets encrypt.org",
    ],
)
def test_a_malformed_property_does_not_permit(value: str) -> None:
    sets = chain(("example.com", [(0, "issue", value)]))
    reason = caa_permits(sets, LE, wildcard=False, account_uri="https://x/1", method="http-01")
    assert reason is not None


def test_a_malformed_property_does_not_hide_a_good_one() -> None:
    sets = chain(
        (
            "example.com",
            [(0, "issue", "letsencrypt.org; accounturi"), (0, "issue", "letsencrypt.org")],
        )
    )
    assert caa_permits(sets, LE, wildcard=False, method="http-01") is None
    alone = chain(("example.com", [(0, "issue", "letsencrypt.org; accounturi")]))
    reason = caa_permits(alone, LE, wildcard=False, method="http-01")
    assert reason is not None and "do not parse" in reason
