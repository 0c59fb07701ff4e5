"""What ``hostwright bench ssl`` prints: certificates issued per minute, ACME requests per
certificate beside the protocol's minimum, DNS-to-served p50/p99 in fast mode, and the
renewal planner's busiest hour, each goal with met or MISSED.

Consumes an SslRun and the renewal Spreads; emits text on stdout and the figures by name.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from ops.devtools.bench.ssl.acme_requests import KIND_NAMES, minimum_per_certificate
from ops.devtools.bench.ssl.driver import ROLES, SslRun
from ops.devtools.bench.ssl.renewal_spread import Spread
from ops.devtools.http_load import percentile

GREEN_GOAL_S = 120.0
SPREAD_GOAL = 2.0


@dataclass(frozen=True)
class Figures:
    domains: int
    certificates: int
    issued: int
    served: int  # installed and verified over HTTPS against pebble's root, every name
    held: int  # frozen instead (the rate guard, or failures)
    per_minute: float
    acme_per_certificate: float
    acme_minimum: int
    green_s: list[float]  # per domain: DNS points here → its last certificate served
    cert_s: list[float]  # per certificate: DNS points here → served
    wait_s: list[float]  # per certificate: DNS points here → the check that ordered it began
    order_s: list[float]  # per certificate: that check began → served
    issuing_per_minute: float  # issued / (last Issued - first order)
    spreads: list[Spread]

    @property
    def green_p99_s(self) -> float:
        return percentile(self.green_s, 99)


def figures(run: SslRun, spreads: list[Spread]) -> Figures:
    certs = run.certificates
    pointed = {d.service_id: d.pointed for d in run.domains}
    issued = [m.issued for m in certs.values() if m.issued is not None]
    served = [k for k, ok in run.verified.items() if ok]
    first_pointed = min((p for p in pointed.values() if p is not None), default=None)
    span = (max(issued) - first_pointed).total_seconds() if issued and first_pointed else 0.0
    cert_s: list[float] = []
    green_s: list[float] = []
    wait_s: list[float] = []
    order_s: list[float] = []
    for d in run.domains:
        mine = [certs[(d.service_id, r)] for r in ROLES if (d.service_id, r) in certs]
        at = [m.installed for m in mine]
        if d.pointed is None:
            continue
        cert_s += [_seconds(d.pointed, t) for t in at if t is not None]
        for m in mine:
            if m.ordered is not None and m.installed is not None:
                wait_s.append(_seconds(d.pointed, m.ordered))
                order_s.append(_seconds(m.ordered, m.installed))
        if len(at) == len(ROLES) and all(t is not None for t in at):
            green_s.append(max(_seconds(d.pointed, t) for t in at if t is not None))
    names = max((len(m.names) for m in certs.values()), default=2)
    orders = [m.ordered for m in certs.values() if m.ordered is not None]
    issuing = (max(issued) - min(orders)).total_seconds() if issued and orders else 0.0
    return Figures(
        domains=len(run.domains),
        certificates=len(certs),
        issued=len(issued),
        served=len(served),
        held=sum(1 for m in certs.values() if m.frozen and m.installed is None),
        per_minute=len(issued) / span * 60 if span > 0 else 0.0,
        acme_per_certificate=sum(run.acme.values()) / len(issued) if issued else 0.0,
        acme_minimum=minimum_per_certificate(names),
        green_s=green_s,
        cert_s=cert_s,
        wait_s=wait_s,
        order_s=order_s,
        issuing_per_minute=len(issued) / issuing * 60 if issuing > 0 else 0.0,
        spreads=spreads,
    )


def _seconds(start: datetime, end: datetime) -> float:
    return (end - start).total_seconds()


def report(run: SslRun, found: Figures) -> None:
    cadence = run.cadence
    print()
    print(
        f"ssl: {found.domains} Split domains, {found.certificates} certificates (web: the "
        f"domain and www.; mail: mail. and webmail.), pebble as the CA, fast mode "
        f"{cadence.get('fast_attempts', '?')} checks every "
        f"{cadence.get('fast_interval_s', '?')} s, "
        f"{run.ssl_concurrency} certificates checked at once, domains pointed {run.pointing}"
    )
    print(
        f"  deployed with no DNS pointing here: orders → every certificate failed its first "
        f"pre-flight in {run.ordered_to_checked_s:.1f} s"
    )
    print(
        f"  issued {found.issued}/{found.certificates}; served and verified against pebble's "
        f"root for every name {found.served}/{found.certificates}; held (frozen) {found.held}"
    )
    print(
        f"  certificates issued per minute: {found.per_minute:.0f} "
        f"(issued / (last Issued seen - first domain pointed)); once ordering: "
        f"{found.issuing_per_minute:.0f} (issued / (last Issued seen - first ordering check))"
    )
    per_kind = ", ".join(
        f"{kind} {run.acme.get(kind, 0) / max(found.issued, 1):.2f}"
        for kind in (*KIND_NAMES, "other")
        if run.acme.get(kind, 0)
    )
    print(
        f"  ACME requests per certificate: {found.acme_per_certificate:.2f} against the "
        f"protocol's minimum {found.acme_minimum} (newOrder 1 + authorization k + challenge k "
        f"+ order poll 1 + finalize 1 + certificate 1, k = 2 names; newNonce amortised)"
    )
    print(f"    by kind: {per_kind}")
    print(
        '  DNS points here → certificate served ("DNS points here": the registry delegates '
        "the domain to our DNS nodes, whose zone already holds our nodes' A records; "
        '"served": its Certificate.Installed seen in the store, the node\'s install done):'
    )
    print(
        f"    per domain, both certificates: p50 {percentile(found.green_s, 50):.1f} s / "
        f"p99 {found.green_p99_s:.1f} s ({len(found.green_s)} domains)"
    )
    print(
        f"    per certificate: p50 {percentile(found.cert_s, 50):.1f} s / "
        f"p99 {percentile(found.cert_s, 99):.1f} s ({len(found.cert_s)} certificates)"
    )
    print(
        f"    of which DNS points here → the check that orders it begins: "
        f"p50 {percentile(found.wait_s, 50):.1f} s / p99 {percentile(found.wait_s, 99):.1f} s; "
        f"that check → served: p50 {percentile(found.order_s, 50):.1f} s / "
        f"p99 {percentile(found.order_s, 99):.1f} s"
    )
    for spread in found.spreads:
        print(
            f"  renewal planner, {spread.certificates:,} {spread.lifetime_days}-day "
            f"certificates issued in one hour: the busiest hour holds {spread.busiest} "
            f"({spread.busiest_share:.2%}), {spread.ratio:.2f}x the average "
            f"{spread.average:.1f} of the {spread.hours} hours renewals span"
        )
    p99 = found.green_p99_s
    print(
        f"goal: DNS-to-green p99 under {GREEN_GOAL_S:.0f} s in fast mode: {p99:.1f} s "
        f"{'met' if p99 < GREEN_GOAL_S and found.served == found.certificates else 'MISSED'}"
    )
    worst = max(spread.ratio for spread in found.spreads)
    print(
        f"goal: no hour above {SPREAD_GOAL:g}x the average renewal load: worst {worst:.2f}x "
        f"{'met' if worst <= SPREAD_GOAL else 'MISSED'}"
    )
