"""CAA (RFC 8659): ``Authorities.caa_chain``'s walk up the tree and along CNAMEs, over a fake
DNS that answers from a table, giving the sets ``domain.ssl_policy.caa_permits`` reads (the
rule itself is tested in ``test_caa.py``)."""

from __future__ import annotations

import pytest

from domain.ssl_policy import caa_permits
from domain.ssl_types import CaaRecord, CaaSet
from handlers.dns_authority import Answer, Authorities, Server, ZoneServers

LE = frozenset({"letsencrypt.org"})


def issue(value: str, tag: str = "issue", flags: int = 0) -> CaaRecord:
    return CaaRecord(flags, tag, value)


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
            return ZoneServers(None, (), f"no authoritative server for {name}", absent=True)
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
        CaaSet("a.b.shop.test"),
        CaaSet("b.shop.test"),
        CaaSet("shop.test", (issue("letsencrypt.org"),)),
    )
    assert fake.asked == ["a.b.shop.test", "b.shop.test", "shop.test"]


async def test_the_walk_leaves_the_zone_and_never_asks_the_top_level_domain() -> None:
    fake = TableAuthorities({"shop.example.test": "127.0.0.21"}, {})
    chain = await fake.caa_chain("www.shop.example.test")
    assert [caa_set.name for caa_set in chain.sets] == [
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
    assert chain.sets == (CaaSet("mail.cdn.test", (issue("other.example"),)),)
    assert caa_permits(chain.sets, LE, wildcard=False) == (
        "CAA at mail.cdn.test allows only other.example to issue certificates, "
        "not this CA (letsencrypt.org)"
    )


async def test_a_wildcard_is_looked_up_at_its_base_name() -> None:
    fake = TableAuthorities(
        {"p.test": "127.0.0.21"}, {("p.test", "CAA"): caa(issue(";", "issuewild"))}
    )
    chain = await fake.caa_chain("*.p.test")
    assert chain.sets == (CaaSet("p.test", (issue(";", "issuewild"),)),)


@pytest.mark.parametrize("rcode", ["SERVFAIL", "TIMEOUT", "REFUSED"])
async def test_a_failed_lookup_is_a_problem_not_an_empty_set(rcode: str) -> None:
    fake = TableAuthorities({"shop.test": "127.0.0.21"}, {("shop.test", "CAA"): Answer(rcode)})
    chain = await fake.caa_chain("www.shop.test")
    assert chain.problem == (f"CAA lookup for shop.test failed: ns.shop.test (127.0.0.21): {rcode}")


async def test_a_level_whose_servers_were_not_found_is_a_problem_not_an_empty_set() -> None:
    class Unanswered(TableAuthorities):
        async def zone_servers(self, name: str) -> ZoneServers:
            if name == "example.test":
                return ZoneServers(None, (), "no DNS resolver answered (127.0.0.53:53)")
            return await super().zone_servers(name)

    fake = Unanswered({"shop.example.test": "127.0.0.21"}, {})
    chain = await fake.caa_chain("www.shop.example.test")
    assert chain.problem == (
        "CAA lookup for example.test failed: no DNS resolver answered (127.0.0.53:53)"
    )
