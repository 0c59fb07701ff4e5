"""The SSL pre-flight against real DNS, HTTP and TLS on loopback.

Two simulated DNS nodes (127.0.0.21 and .22, one port) hold the zones; a DelegationDns on
127.0.0.1 is the resolver that says they are authoritative; a simulated web node on
127.0.0.31 serves the challenge files and the certificates. Nothing leaves 127.0.0.0/8.
"""

from __future__ import annotations

import asyncio
import shlex
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import dns.asyncquery
import dns.flags
import dns.message
import dns.rdatatype
import pytest

from domain.ssl_types import CertificateFacts
from handlers import x509_tools
from handlers.dns_authority import Authorities
from handlers.ssl_preflight import Preflight
from ops.devtools.delegation_dns import DelegationDns
from ops.devtools.mini_ca import Leaf, MiniCa
from ops.devtools.simnode import SimNode
from tests.support.budget import budget

NS1, NS2, WEB = "127.0.0.21", "127.0.0.22", "127.0.0.31"
REDIRECTOR = "127.0.0.41"  # a web server that redirects
SILENT = "127.0.0.23"  # where no DNS server listens
USER = "alice"
ZONE = "shop.test"
LETSENCRYPT = frozenset({"letsencrypt.org"})


def _shared_free_port(hosts: tuple[str, ...]) -> int:
    """A UDP port free on every one of ``hosts`` (the DNS nodes share one, as on port 53)."""
    for _ in range(50):
        probes = []
        try:
            first = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            probes.append(first)
            first.bind((hosts[0], 0))
            port = first.getsockname()[1]
            for host in hosts[1:]:
                probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                probes.append(probe)
                probe.bind((host, port))
            return int(port)
        except OSError:
            continue
        finally:
            for probe in probes:
                probe.close()
    raise RuntimeError(f"no UDP port free on all of {hosts}")


async def run(node: SimNode, *argv: str) -> None:
    result = await node.executor.execute("admin", shlex.join(argv))
    assert result.exit_code == 0, (argv, result.stdout, result.stderr)


@dataclass
class Network:
    ns1: SimNode
    ns2: SimNode
    web: SimNode
    resolver: DelegationDns
    ca: MiniCa

    def preflight(
        self,
        *,
        issuer_ids: frozenset[str] = LETSENCRYPT,
        ours: bool = True,
        roots: bool = True,
        dns_timeout_s: float = 2.0,
        account: str | None = None,
    ) -> Preflight:
        async def ids() -> frozenset[str]:
            return issuer_ids

        async def account_uri() -> str | None:
            return account

        ports = self.web.ports()
        authorities = Authorities(
            [("127.0.0.1", self.resolver.port)],
            port=self.resolver.auth_port,
            timeout_s=budget(dns_timeout_s),
        )
        return Preflight(
            authorities,
            issuer_ids=ids,
            account_uri=account_uri,
            our_dns=frozenset({NS1, NS2}) if ours else frozenset(),
            http_port=int(ports["http"] or 0),
            tls_port=int(ports["https"] or 0),
            trusted_roots_pem=self.ca.certificate_pem if roots else "",
            timeout_s=budget(5.0),
        )

    async def zone(self, zone: str, *, ip: str = WEB, ns2_ip: str | None = None) -> None:
        """``zone`` on both DNS nodes (Hestia's default template), delegated to them."""
        for node, address in ((self.ns1, ip), (self.ns2, ns2_ip or ip)):
            await run(node, "v-add-dns-domain", USER, zone, address, f"ns1.{zone}", f"ns2.{zone}")
        self.resolver.delegate(zone, [(f"ns1.{zone}", NS1), (f"ns2.{zone}", NS2)])

    async def record(self, zone: str, *args: str) -> None:
        for node in (self.ns1, self.ns2):
            await run(node, "v-add-dns-record", USER, zone, *args)

    def docroot(self, domain: str) -> Path:
        return self.web.data_dir / "fs" / "home" / USER / "web" / domain / "public_html"


@pytest.fixture
async def net(tmp_path: Path) -> AsyncIterator[Network]:
    dns_port = _shared_free_port((NS1, NS2))
    ns1 = SimNode(tmp_path / "ns1", ["dns"], NS1, dns_port=dns_port)
    ns2 = SimNode(tmp_path / "ns2", ["dns"], NS2, dns_port=dns_port)
    web = SimNode(tmp_path / "web", ["web"], WEB)
    resolver = DelegationDns("127.0.0.1", 0, auth_port=dns_port)
    started = []
    try:
        for part in (ns1, ns2, web, resolver):
            await part.start()
            started.append(part)
        for node in (ns1, ns2, web):
            await run(node, "v-add-user", USER, "pw", f"{USER}@example.com")
        await run(web, "v-add-web-domain", USER, ZONE)
        yield Network(ns1, ns2, web, resolver, MiniCa())
    finally:
        for part in reversed(started):
            await part.stop()


# --- DNS -----------------------------------------------------------------------------------


async def test_names_pointing_here_pass_and_our_servers_allow_dns01(net: Network) -> None:
    await net.zone(ZONE)
    verdict = await net.preflight().dns([ZONE, f"www.{ZONE}"], [WEB], wildcard=False)
    assert verdict.ok, verdict.reason
    assert verdict.dns01
    assert verdict.authorities == (NS1, NS2)
    elsewhere = await net.preflight(ours=False).dns([ZONE], [WEB], wildcard=False)
    assert elsewhere.ok and not elsewhere.dns01


async def test_a_wrong_a_record_on_one_of_two_servers_names_that_server(net: Network) -> None:
    await net.zone(ZONE, ns2_ip="127.0.0.99")
    verdict = await net.preflight().dns([ZONE, f"www.{ZONE}"], [WEB], wildcard=False)
    assert not verdict.ok
    assert verdict.check == "dns"
    assert verdict.reason == (f"A 127.0.0.99 is not this server ({ZONE} on ns2.{ZONE} ({NS2}))")


async def test_a_stray_aaaa_fails_unless_it_is_this_server(net: Network) -> None:
    await net.zone(ZONE)
    await net.record(ZONE, "@", "AAAA", "2001:db8::1")
    verdict = await net.preflight().dns([ZONE], [WEB], wildcard=False)
    assert not verdict.ok
    assert verdict.check == "dns"
    assert verdict.reason is not None
    assert verdict.reason.startswith("AAAA 2001:db8::1 is not this server")
    with_v6 = await net.preflight().dns([ZONE], [WEB, "2001:db8::1"], wildcard=False)
    assert with_v6.ok, with_v6.reason


async def test_caa_at_the_apex_forbidding_the_ca_fails_www(net: Network) -> None:
    await net.zone(ZONE)
    await net.record(ZONE, "@", "CAA", '0 issue "other.example"')
    verdict = await net.preflight().dns([f"www.{ZONE}"], [WEB], wildcard=False)
    assert not verdict.ok
    assert verdict.check == "caa"
    assert verdict.reason == (
        f"CAA at {ZONE} allows only other.example to issue certificates, not this CA "
        f"(letsencrypt.org) (checking www.{ZONE})"
    )
    allowed = await net.preflight(issuer_ids=frozenset({"other.example"})).dns(
        [f"www.{ZONE}"], [WEB], wildcard=False
    )
    assert allowed.ok, allowed.reason


async def test_caa_accounturi_binds_issuance_to_our_account(net: Network) -> None:
    ours = "https://acme.test/acct/1"
    await net.zone(ZONE)
    await net.record(ZONE, "@", "CAA", f'0 issue "letsencrypt.org; accounturi={ours}"')
    verdict = await net.preflight(account=ours).dns([f"www.{ZONE}"], [WEB], wildcard=False)
    assert verdict.ok, verdict.reason
    other = await net.preflight(account="https://acme.test/acct/2").dns(
        [f"www.{ZONE}"], [WEB], wildcard=False
    )
    assert not other.ok and other.check == "caa"
    assert other.reason is not None and ours in other.reason


async def test_caa_validationmethods_chooses_or_refuses_the_method(net: Network) -> None:
    await net.zone(ZONE)
    await net.record(ZONE, "@", "CAA", '0 issue "letsencrypt.org; validationmethods=http-01"')
    # our DNS servers would allow DNS-01, but CAA lets the CA validate only by HTTP-01
    http_only = await net.preflight().dns([f"www.{ZONE}"], [WEB], wildcard=False)
    assert http_only.ok and not http_only.dns01, http_only.reason
    await net.zone("provider.test")
    await net.record(
        "provider.test", "@", "CAA", '0 issue "letsencrypt.org; validationmethods=dns-01"'
    )
    dns_only = await net.preflight(ours=False).dns(["provider.test"], [WEB], wildcard=False)
    assert not dns_only.ok and dns_only.check == "caa"
    assert dns_only.reason is not None and "http-01" in dns_only.reason
    ours = await net.preflight().dns(["provider.test"], [WEB], wildcard=False)
    assert ours.ok and ours.dns01, ours.reason
    # our servers, but no zone of the certificate's to put the TXT in: HTTP-01, refused
    no_zone = await net.preflight().dns(
        ["provider.test"], [WEB], wildcard=False, dns01_possible=False
    )
    assert not no_zone.ok and no_zone.check == "caa"
    assert no_zone.reason is not None and "http-01" in no_zone.reason


async def test_issuewild_decides_for_the_wildcard_only(net: Network) -> None:
    await net.zone("provider.test")
    await net.record("provider.test", "@", "CAA", '0 issue "letsencrypt.org"')
    await net.record("provider.test", "@", "CAA", '0 issuewild ";"')
    preflight = net.preflight()
    wildcard = await preflight.dns(["*.provider.test"], [], wildcard=True)
    assert not wildcard.ok
    assert wildcard.check == "caa"
    assert wildcard.reason is not None and "issuewild" in wildcard.reason
    apex = await preflight.dns(["provider.test"], [WEB], wildcard=False)
    assert apex.ok, apex.reason


async def test_a_wildcard_needs_dns_servers_of_ours(net: Network) -> None:
    await net.zone("provider.test")
    ours = await net.preflight().dns(["*.provider.test"], [], wildcard=True)
    assert ours.ok and ours.dns01
    theirs = await net.preflight(ours=False).dns(["*.provider.test"], [], wildcard=True)
    assert not theirs.ok
    assert theirs.reason is not None and "needs DNS-01" in theirs.reason


async def test_an_undelegated_zone_has_no_authoritative_server(net: Network) -> None:
    verdict = await net.preflight().dns(["nowhere.test"], [WEB], wildcard=False)
    assert (verdict.ok, verdict.check) == (False, "dns")
    assert verdict.reason == "no authoritative server for nowhere.test"
    await net.zone(ZONE)
    assert (await net.preflight().dns([ZONE], [WEB], wildcard=False)).ok
    net.resolver.undelegate(ZONE)
    gone = await net.preflight().dns([f"www.{ZONE}"], [WEB], wildcard=False)
    assert gone.reason == f"no authoritative server for www.{ZONE}"


async def test_the_delegation_double_answers_over_tcp_as_a_resolver(net: Network) -> None:
    await net.zone(ZONE)
    query = dns.message.make_query(f"www.{ZONE}", "A")
    response = await dns.asyncquery.tcp(
        query, "127.0.0.1", timeout=budget(2.0), port=net.resolver.port
    )
    assert response.flags & dns.flags.RA and not response.flags & dns.flags.AA
    # www is a CNAME in Hestia's template: the resolver chases it to the apex's A
    addresses = [
        r.address for rrset in response.answer if rrset.rdtype == dns.rdatatype.A for r in rrset
    ]
    assert addresses == [WEB]


# --- HTTP-01 -------------------------------------------------------------------------------


async def _checked(net: Network, preflight: Preflight) -> None:
    await net.zone(ZONE)
    verdict = await preflight.dns([ZONE, f"www.{ZONE}"], [WEB], wildcard=False)
    assert verdict.ok, verdict.reason


async def test_a_token_placed_on_the_node_is_fetched_back_by_name_and_removed(
    net: Network,
) -> None:
    preflight = net.preflight()
    await _checked(net, preflight)
    challenges = net.docroot(ZONE) / ".well-known" / "acme-challenge"
    placed: list[str] = []

    async def place(token: str, body: str) -> None:
        challenges.mkdir(parents=True, exist_ok=True)
        (challenges / token).write_text(body)
        placed.append(token)

    async def remove(token: str) -> None:
        (challenges / token).unlink()

    assert await preflight.http01(f"www.{ZONE}", WEB, place, remove) is None
    assert len(placed) == 1
    assert list(challenges.iterdir()) == []


async def _nothing(*_: str) -> None:
    return None


async def test_a_node_not_serving_the_challenge_is_a_reason(net: Network) -> None:
    preflight = net.preflight()
    await _checked(net, preflight)
    missing = await preflight.http01(ZONE, WEB, _nothing, _nothing)
    assert missing is not None
    assert missing.startswith(f"http://{ZONE}/.well-known/acme-challenge/")
    assert "answered 404 Not Found" in missing
    await run(net.web, "v-suspend-web-domain", USER, ZONE)
    suspended = await preflight.http01(ZONE, WEB, _nothing, _nothing)
    assert suspended is not None and "answered 403 Forbidden" in suspended


async def test_an_address_dns_did_not_give_is_never_dialled(net: Network) -> None:
    preflight = net.preflight()
    placed: list[str] = []

    async def place(token: str, body: str) -> None:
        placed.append(token)

    before = await preflight.http01(ZONE, WEB, place, _nothing)
    assert before is not None and "is not an address the authoritative DNS gave" in before
    await _checked(net, preflight)
    other = await preflight.http01(ZONE, "127.0.0.32", place, _nothing)
    assert other is not None and "127.0.0.32 is not an address" in other
    net.resolver.undelegate(ZONE)  # the domain's DNS left us
    assert not (await preflight.dns([ZONE], [WEB], wildcard=False)).ok
    left = await preflight.http01(ZONE, WEB, place, _nothing)
    assert left is not None and "is not an address the authoritative DNS gave" in left
    assert placed == []


# --- TLS -----------------------------------------------------------------------------------


async def _install(net: Network, names: list[str], **validity: datetime) -> Leaf:
    leaf = net.ca.leaf(names, **validity)
    ssl_dir = net.web.data_dir / "fs" / "tmp" / "ssl"
    ssl_dir.mkdir(parents=True)
    (ssl_dir / f"{ZONE}.crt").write_text(leaf.certificate_pem)
    (ssl_dir / f"{ZONE}.key").write_text(leaf.key_pem)
    # Hestia refuses a certificate no system root signs without its .ca ("Certificate
    # Authority not found"): the test root is the issuer here
    (ssl_dir / f"{ZONE}.ca").write_text(net.ca.certificate_pem)
    await run(net.web, "v-add-web-domain-ssl", USER, ZONE, "/tmp/ssl")
    return leaf


def _renew_at_a_third_left(facts: CertificateFacts) -> datetime:
    return facts.not_after - facts.lifetime / 3


async def test_a_valid_certificate_already_served_is_read_into_facts(net: Network) -> None:
    preflight = net.preflight()
    await _checked(net, preflight)
    names = [ZONE, f"www.{ZONE}"]
    leaf = await _install(net, names)
    now = datetime.now(UTC)
    facts = await preflight.tls(names, WEB, now, _renew_at_a_third_left)
    assert facts is not None
    assert facts == x509_tools.facts(leaf.certificate_pem)  # the served leaf, read as uploads are
    assert facts.names == tuple(names)
    assert facts.common_name == ZONE
    assert facts.issuer == "CN=hostwright test root"
    assert facts.ari_id is not None and "." in facts.ari_id
    assert facts.not_before <= now < facts.not_after
    untrusting = net.preflight(roots=False)
    await untrusting.dns(names, [WEB], wildcard=False)
    assert await untrusting.tls(names, WEB, now, _renew_at_a_third_left) is None


async def test_a_certificate_inside_its_renewal_window_is_not_adopted(net: Network) -> None:
    preflight = net.preflight()
    await _checked(net, preflight)
    names = [ZONE, f"www.{ZONE}"]
    start = datetime.now(UTC) - timedelta(days=70)
    await _install(net, names, not_before=start, not_after=start + timedelta(days=90))
    now = datetime.now(UTC)
    assert await preflight.tls(names, WEB, now, _renew_at_a_third_left) is None
    assert await preflight.tls(names, WEB, now, lambda f: f.not_after) is not None


async def test_a_certificate_missing_a_name_is_not_adopted(net: Network) -> None:
    preflight = net.preflight()
    await _checked(net, preflight)
    await _install(net, [ZONE])
    now = datetime.now(UTC)
    assert await preflight.tls([ZONE], WEB, now, _renew_at_a_third_left) is not None
    assert await preflight.tls([ZONE, f"www.{ZONE}"], WEB, now, _renew_at_a_third_left) is None


async def test_a_same_host_redirect_is_followed_and_another_host_is_not(net: Network) -> None:
    """As a CA does: a site may move the challenge within its own name, never elsewhere."""
    preflight = net.preflight()
    port = int(net.web.ports()["http"] or 0)
    bodies: dict[str, str] = {}

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
        target = head[0].split(" ")[1]
        host = next(h.split(":", 1)[1].strip() for h in head if h.lower().startswith("host:"))
        token = target.rsplit("/", 1)[1]
        if target.startswith("/moved/"):
            status, extra, body = "200 OK", "", bodies.get(token, "")
        elif host == "moved.test":
            status, extra, body = "301 Moved", f"Location: /moved/{token}\r\n", ""
        else:
            status, extra, body = "302 Found", f"Location: http://elsewhere.test{target}\r\n", ""
        writer.write(
            f"HTTP/1.1 {status}\r\n{extra}Content-Length: {len(body)}\r\n"
            f"Connection: close\r\n\r\n{body}".encode()
        )
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(serve, REDIRECTOR, port)
    try:
        for zone in ("moved.test", "away.test"):
            await net.zone(zone, ip=REDIRECTOR)
            assert (await preflight.dns([zone], [REDIRECTOR], wildcard=False)).ok

        async def place(token: str, body: str) -> None:
            bodies[token] = body

        assert await preflight.http01("moved.test", REDIRECTOR, place, _nothing) is None
        away = await preflight.http01("away.test", REDIRECTOR, place, _nothing)
        assert away is not None
        assert "redirects to http://elsewhere.test/.well-known/acme-challenge/" in away
        assert away.endswith("another host")
    finally:
        server.close()
        await server.wait_closed()


async def test_a_dns01_record_is_visible_only_once_every_server_has_it(net: Network) -> None:
    await net.zone(ZONE)
    verdict = await net.preflight().dns([ZONE], [WEB], wildcard=False)
    fqdn = f"_acme-challenge.{ZONE}"
    await run(net.ns1, "v-add-dns-record", USER, ZONE, "_acme-challenge", "TXT", "token-1")
    assert not await net.preflight().txt_visible(fqdn, "token-1", verdict.authorities)
    await run(net.ns2, "v-add-dns-record", USER, ZONE, "_acme-challenge", "TXT", "token-1")
    assert await net.preflight().txt_visible(fqdn, "token-1", verdict.authorities)
    assert not await net.preflight().txt_visible(fqdn, "token-2", verdict.authorities)


async def test_a_server_that_does_not_answer_is_named(net: Network) -> None:
    await net.zone(ZONE)
    net.resolver.delegate(ZONE, [(f"ns1.{ZONE}", NS1), (f"ns3.{ZONE}", SILENT)])
    # nothing ever answers there, so waiting longer could not change the outcome
    verdict = await net.preflight(dns_timeout_s=0.5).dns([ZONE], [WEB], wildcard=False)
    assert (verdict.ok, verdict.check) == (False, "dns")
    assert verdict.reason == f"ns3.{ZONE} ({SILENT}) did not answer for {ZONE} A"


async def test_the_delegation_double_truncates_a_long_udp_answer_and_tcp_carries_it(
    net: Network,
) -> None:
    await net.zone(ZONE)
    for i in range(12):
        await net.record(ZONE, "big", "TXT", f"record-{i:02}-" + "x" * 50)
    query = dns.message.make_query(f"big.{ZONE}", "TXT")  # no EDNS: 512 bytes over UDP
    truncated = await dns.asyncquery.udp(
        query, "127.0.0.1", timeout=budget(2.0), port=net.resolver.port
    )
    assert truncated.flags & dns.flags.TC and not truncated.answer
    response, used_tcp = await dns.asyncquery.udp_with_fallback(
        query, "127.0.0.1", timeout=budget(2.0), port=net.resolver.port
    )
    assert used_tcp
    assert sum(len(rrset) for rrset in response.answer) == 12


async def test_a_resolver_that_refuses_is_no_answer(net: Network) -> None:
    """A simulated DNS node refuses names it does not hold, as a resolver closed to us would:
    that is no verdict on the name."""
    dns_port = net.resolver.auth_port
    authorities = Authorities([(NS1, dns_port)], port=dns_port, timeout_s=budget(2.0))
    zone = await authorities.zone_servers(f"www.{ZONE}")
    assert zone.servers == ()
    assert zone.problem == f"no DNS resolver answered ({NS1}:{dns_port})"


async def test_a_challenge_answer_streaming_a_large_body_is_cut_off(net: Network) -> None:
    """A site answering with an endless body is read only as far as a token could be."""
    preflight = net.preflight()
    port = int(net.web.ports()["http"] or 0)
    total, chunk = 64 * 1024 * 1024, b"x" * 65536
    sent: list[int] = [0]
    ended = asyncio.Event()

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(
            f"HTTP/1.1 200 OK\r\nContent-Length: {total}\r\nConnection: close\r\n\r\n".encode()
        )
        try:
            while sent[0] < total:
                writer.write(chunk)
                await writer.drain()
                sent[0] += len(chunk)
        except (ConnectionError, OSError):
            pass  # the reader hung up
        finally:
            writer.close()
            ended.set()

    server = await asyncio.start_server(serve, REDIRECTOR, port)
    try:
        await net.zone("big.test", ip=REDIRECTOR)
        assert (await preflight.dns(["big.test"], [REDIRECTOR], wildcard=False)).ok
        reason = await preflight.http01("big.test", REDIRECTOR, _nothing, _nothing)
        assert reason is not None and "served more than" in reason
        await ended.wait()
        assert sent[0] < total  # hung up long before the end
    finally:
        server.close()
        await server.wait_closed()


async def test_a_caa_level_whose_servers_cannot_be_found_is_the_chains_problem(
    net: Network,
) -> None:
    await net.zone(ZONE)
    dns_port = net.resolver.auth_port
    found = Authorities([("127.0.0.1", net.resolver.port)], port=dns_port, timeout_s=budget(2.0))
    assert (await found.caa_chain(f"www.{ZONE}")).problem is None
    assert (await found.caa_chain("nowhere.test")).problem is None  # no NS: no CAA there
    # a resolver that does not recurse: the servers' addresses cannot be found, which is
    # not "no CAA"
    refusing = Authorities([(NS1, dns_port)], port=dns_port, timeout_s=budget(2.0))
    chain = await refusing.caa_chain(f"www.{ZONE}")
    assert chain.problem is not None
    assert chain.problem.startswith(f"CAA lookup for www.{ZONE} failed: ")
    assert chain.problem.endswith("have no address")
