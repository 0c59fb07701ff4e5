"""``hostwright bench ssl`` on five domains: pebble, simulated nodes, a DelegationDns and
hostwright on the embedded default, all real processes. The report has every figure, and
every certificate it counts was really issued: each node presents, by SNI for every name,
a certificate that verifies against the run's pebble root through pebble's intermediate."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from cryptography import x509
from cryptography.x509.verification import PolicyBuilder, Store

from ops.cli import main
from ops.devtools.bench.ssl import measure_ssl
from ops.devtools.bench.ssl.report import report
from tests.support.budget import budget

pytestmark = pytest.mark.slow

DOMAINS = 5
FIGURES = (
    "certificates issued per minute: ",
    "ACME requests per certificate: ",
    "against the protocol's minimum 8 ",
    "per domain, both certificates: p50 ",
    "per certificate: p50 ",
    "of which DNS points here → the check that orders it begins: p50 ",
    '"DNS points here": the registry delegates the domain to our DNS nodes',
    "renewal planner, 10,000 90-day certificates issued in one hour: the busiest hour holds ",
    "goal: DNS-to-green p99 under 120 s in fast mode: ",
    "goal: no hour above 2x the average renewal load: worst ",
)


def test_five_domains_get_their_certificates_and_the_report_has_every_figure(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # fast mode 5 s apart (the setting's floor), not 30: the figures are the same, sooner
    measured = measure_ssl(domains=DOMAINS, point_rate=0, timeout_s=budget(300), fast_interval_s=5)
    assert measured is not None
    run, found = measured
    report(run, found)
    shown = capsys.readouterr().out
    for figure in FIGURES:
        assert figure in shown, f"{figure!r} missing from:\n{shown}"
    assert f"issued {2 * DOMAINS}/{2 * DOMAINS}; served and verified" in shown, shown
    assert "checks every 5 s" in shown, shown  # the run's fast interval, as the report says

    assert len(run.domains) == DOMAINS and all(d.pointed for d in run.domains)
    assert found.issued == found.served == found.certificates == 2 * DOMAINS
    assert len(found.green_s) == DOMAINS and len(found.cert_s) == 2 * DOMAINS
    assert found.per_minute > 0 and found.acme_per_certificate >= found.acme_minimum == 8
    assert sum(run.acme.get(kind, 0) for kind in ("newOrder", "finalize", "certificate")) == (
        3 * found.issued  # one order, one finalize, one download per certificate
    )
    roots = Store(x509.load_pem_x509_certificates(run.roots_pem.encode()))
    intermediates = x509.load_pem_x509_certificates(run.intermediates_pem.encode())
    for d in run.domains:
        for role, names in (
            ("web", [d.domain, f"www.{d.domain}"]),
            ("mail", [f"mail.{d.domain}", f"webmail.{d.domain}"]),
        ):
            served = run.served_pem[(d.service_id, role)]
            assert len(served) == len(names), (d, role)
            for name, der in zip(names, served, strict=True):
                leaf = x509.load_der_x509_certificate(der)
                verifier = (
                    PolicyBuilder()
                    .store(roots)
                    .time(datetime.now(UTC))
                    .build_server_verifier(x509.DNSName(name))
                )
                verifier.verify(leaf, intermediates)  # raises unless it chains to the root
    assert all(spread.ratio <= 2 for spread in found.spreads)


def test_more_domains_than_one_account_may_order_in_three_hours_are_refused(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["bench", "ssl", "--domains", "150"])
    assert exited.value.code == 2
    assert "300 new orders in 3 hours" in capsys.readouterr().err
