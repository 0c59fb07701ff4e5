"""CAA (RFC 8659) as ``caa_permits`` reads it: the closest non-empty set decides; ``issue``
and ``issuewild``; parameters; a critical unknown property; a CA with no identity."""

from __future__ import annotations

import pytest

from domain.ssl_policy import caa_permits
from domain.ssl_types import CaaRecord, CaaSet

LE = frozenset({"letsencrypt.org"})


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
    assert caa_permits(sets, LE, wildcard=False) is None
    dotted = chain(("example.com", [(0, "issue", " LetsEncrypt.org. ; accounturi=https://x/1")]))
    assert caa_permits(dotted, LE, wildcard=False) is None
    assert caa_permits(dotted, frozenset({"LetsEncrypt.ORG."}), wildcard=False) is None


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
