"""CAA (RFC 8659): the pure rule ``caa_permits``, and ``Authorities.caa_chain``'s walk up the
tree and along CNAMEs, over a fake DNS that answers from a table."""

from __future__ import annotations

import pytest

from domain.caa import CaaRecord, caa_permits
from handlers.dns_authority import Answer, Authorities, Server, ZoneServers

LE = frozenset({"letsencrypt.org"})


def issue(value: str, tag: str = "issue", flags: int = 0) -> CaaRecord:
    return CaaRecord(flags, tag, value)


# --- the rule ------------------------------------------------------------------------------


def test_no_caa_anywhere_lets_every_ca_issue() -> None:
    assert caa_permits([("www.shop.test", ()), ("shop.test", ())], LE, False) is None
    assert caa_permits([], frozenset(), True) is None


def test_the_closest_non_empty_set_decides() -> None:
    chain = [
        ("www.shop.test", ()),
        ("shop.test", (issue("letsencrypt.org"),)),
        ("test", (issue("other.example"),)),
    ]
    assert caa_permits(chain, LE, False) is None
    chain[1] = ("shop.test", (issue("other.example"),))
    assert caa_permits(chain, LE, False) == (
        "CAA issue at shop.test allows other.example, not letsencrypt.org"
    )


def test_issuer_names_compare_without_case_dots_or_parameters() -> None:
    records = (issue(" LetsEncrypt.org. ; accounturi=https://acme.test/acct/1"),)
    assert caa_permits([("shop.test", records)], LE, False) is None


def test_an_empty_issuer_forbids_every_ca() -> None:
    reason = caa_permits([("shop.test", (issue(";"),))], LE, False)
    assert reason == "CAA issue at shop.test allows no CA, not letsencrypt.org"


def test_issuewild_decides_for_wildcards_and_is_ignored_otherwise() -> None:
    records = (issue("letsencrypt.org"), issue(";", "issuewild"))
    assert caa_permits([("p.test", records)], LE, False) is None
    assert caa_permits([("p.test", records)], LE, True) == (
        "CAA issuewild at p.test allows no CA for wildcards, not letsencrypt.org"
    )
    only_wild = (issue("letsencrypt.org", "issuewild"),)
    assert caa_permits([("p.test", only_wild)], LE, True) is None
    assert caa_permits([("p.test", only_wild)], frozenset({"other.example"}), False) is None


def test_a_wildcard_without_issuewild_follows_issue() -> None:
    records = (issue("other.example"),)
    assert caa_permits([("p.test", records)], LE, True) == (
        "CAA issue at p.test allows other.example, not letsencrypt.org"
    )


def test_a_set_without_issue_properties_forbids_nothing() -> None:
    assert caa_permits([("shop.test", (issue("mailto:x@shop.test", "iodef"),))], LE, False) is None


def test_an_unknown_critical_property_forbids_and_an_unknown_plain_one_does_not() -> None:
    critical = (issue("letsencrypt.org"), issue("x", "tbs", flags=128))
    reason = caa_permits([("shop.test", critical)], LE, False)
    assert reason is not None and "critical 'tbs'" in reason
    plain = (issue("letsencrypt.org"), issue("x", "tbs", flags=0))
    assert caa_permits([("shop.test", plain)], LE, False) is None
    known_critical = (issue("letsencrypt.org", flags=128),)
    assert caa_permits([("shop.test", known_critical)], LE, False) is None


def test_a_ca_without_caa_identities_is_refused_by_any_issue_set() -> None:
    records = (issue("letsencrypt.org"),)
    reason = caa_permits([("shop.test", records)], frozenset(), False)
    assert reason == (
        "CAA issue at shop.test allows letsencrypt.org, and this CA publishes no CAA identity "
        "to match"
    )
    assert caa_permits([("shop.test", ())], frozenset(), False) is None


# --- the walk ------------------------------------------------------------------------------


class TableAuthorities(Authorities):
    """Authorities whose zones and answers come from tables: every name under a zone of
    ``zones`` is served by one server there, answering from ``answers[(name, type)]``."""

    def __init__(self, zones: dict[str, str], answers: dict[tuple[str, str], Answer]) -> None:
        super().__init__([])
        self.zones, self.answers = zones, answers
        self.asked: list[str] = []

    async def zone_servers(self, name: str) -> ZoneServers:
        held = [z for z in self.zones if name == z or name.endswith("." + z)]
        if not held:
            return ZoneServers(None, (), f"no authoritative server for {name}")
        zone = max(held, key=len)
        return ZoneServers(zone, (Server(f"ns.{zone}", self.zones[zone]),))

    async def ask(self, address: str, name: str, rdtype: str) -> Answer:
        self.asked.append(name)
        return self.answers.get((name, rdtype), Answer("NOERROR"))


def caa(*records: CaaRecord) -> Answer:
    return Answer(
        "NOERROR", tuple(f"{r.flags} {r.tag} {r.value!r}" for r in records), None, records
    )


async def test_the_walk_goes_up_to_the_first_set_and_stops_there() -> None:
    fake = TableAuthorities(
        {"shop.test": "127.0.0.21"},
        {("shop.test", "CAA"): caa(issue("letsencrypt.org"))},
    )
    chain = await fake.caa_chain("a.b.shop.test")
    assert chain.problem is None
    assert chain.sets == (
        ("a.b.shop.test", ()),
        ("b.shop.test", ()),
        ("shop.test", (issue("letsencrypt.org"),)),
    )
    assert fake.asked == ["a.b.shop.test", "b.shop.test", "shop.test"]


async def test_the_walk_leaves_the_zone_and_never_asks_the_top_level_domain() -> None:
    fake = TableAuthorities({"shop.example.test": "127.0.0.21"}, {})
    chain = await fake.caa_chain("www.shop.example.test")
    assert [owner for owner, _ in chain.sets] == [
        "www.shop.example.test",
        "shop.example.test",
        "example.test",  # held by no zone here: empty, as a name nothing serves
    ]
    assert "test" not in fake.asked


async def test_a_cname_is_followed_and_its_target_owns_the_set() -> None:
    fake = TableAuthorities(
        {"shop.test": "127.0.0.21", "cdn.test": "127.0.0.22"},
        {
            ("webmail.shop.test", "CAA"): Answer("NOERROR", (), "mail.cdn.test"),
            ("mail.cdn.test", "CAA"): caa(issue("other.example")),
            ("shop.test", "CAA"): caa(issue("letsencrypt.org")),
        },
    )
    chain = await fake.caa_chain("webmail.shop.test")
    assert chain.sets == (("mail.cdn.test", (issue("other.example"),)),)
    assert caa_permits(chain.sets, LE, False) == (
        "CAA issue at mail.cdn.test allows other.example, not letsencrypt.org"
    )


async def test_a_wildcard_is_looked_up_at_its_base_name() -> None:
    fake = TableAuthorities(
        {"p.test": "127.0.0.21"}, {("p.test", "CAA"): caa(issue(";", "issuewild"))}
    )
    chain = await fake.caa_chain("*.p.test")
    assert chain.sets == (("p.test", (issue(";", "issuewild"),)),)


@pytest.mark.parametrize("rcode", ["SERVFAIL", "TIMEOUT", "REFUSED"])
async def test_a_failed_lookup_is_a_problem_not_an_empty_set(rcode: str) -> None:
    fake = TableAuthorities({"shop.test": "127.0.0.21"}, {("shop.test", "CAA"): Answer(rcode)})
    chain = await fake.caa_chain("www.shop.test")
    assert chain.problem == (f"CAA lookup for shop.test failed: ns.shop.test (127.0.0.21): {rcode}")
