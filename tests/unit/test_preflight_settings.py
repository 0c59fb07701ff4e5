"""The SSL pre-flight's process settings: resolvers as ``ip[:port],…``, the ports a node and
its authoritative DNS are reached at, and the extra roots file, each checked at start."""

from __future__ import annotations

from pathlib import Path

import pytest

from ops.settings import Settings, resolver_addresses


def test_defaults_are_the_system_resolvers_and_the_standard_ports() -> None:
    settings = Settings.load({})
    assert settings.dns_resolver_addresses == []  # empty: the system's resolvers
    assert (settings.dns_authoritative_port, settings.http01_port, settings.tls_probe_port) == (
        53,
        80,
        443,
    )


def test_resolvers_with_and_without_ports() -> None:
    assert resolver_addresses("127.0.0.1:5353, 127.0.0.2,[::1]:53,::1") == [
        ("127.0.0.1", 5353),
        ("127.0.0.2", 53),
        ("::1", 53),
        ("::1", 53),
    ]


@pytest.mark.parametrize("bad", ["resolver.test", "127.0.0.1:0", "127.0.0.1:70000", "1.2.3.4:x"])
def test_a_bad_resolver_is_named(bad: str) -> None:
    _, problems = Settings.read({"HOSTWRIGHT_DNS_RESOLVERS": f"127.0.0.1,{bad}"})
    assert len(problems) == 1 and problems[0].startswith("HOSTWRIGHT_DNS_RESOLVERS"), problems
    assert repr(bad) in problems[0]


def test_ports_are_read_and_a_bad_one_keeps_its_default(tmp_path: Path) -> None:
    roots = tmp_path / "roots.pem"
    roots.write_text("")
    settings, problems = Settings.read(
        {
            "HOSTWRIGHT_HTTP01_PORT": "5002",
            "HOSTWRIGHT_TLS_PROBE_PORT": "99999",
            "HOSTWRIGHT_DNS_AUTHORITATIVE_PORT": "5353",
            "HOSTWRIGHT_TRUSTED_ROOTS": str(roots),
        }
    )
    assert problems == ["HOSTWRIGHT_TLS_PROBE_PORT must be a port from 1 to 65535"]
    assert (settings.http01_port, settings.tls_probe_port) == (5002, 443)
    assert settings.dns_authoritative_port == 5353


def test_trusted_roots_must_name_a_file(tmp_path: Path) -> None:
    _, problems = Settings.read({"HOSTWRIGHT_TRUSTED_ROOTS": str(tmp_path / "missing.pem")})
    assert problems == [f"HOSTWRIGHT_TRUSTED_ROOTS names no file: {tmp_path / 'missing.pem'}"]
