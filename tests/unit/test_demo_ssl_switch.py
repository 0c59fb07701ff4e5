"""The demo's SSL switch: automatic SSL only when pebble and the Public Suffix List are both
installed; without them the demo says SSL is off and names the packages to install, and with
them its settings turn ``HOSTWRIGHT_SSL=auto`` on against that pebble and that resolver."""

from __future__ import annotations

from pathlib import Path

import pytest

from ops.devtools import demo, demo_ssl
from ops.devtools.demo import demo_settings, ssl_layout, ssl_off_line


def test_without_pebble_the_demo_says_ssl_is_off_and_what_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(demo_ssl, "PEBBLE", str(tmp_path / "no-pebble"))
    assert demo_ssl.missing_packages() == ["pebble"]
    assert not demo_ssl.pebble_installed()
    settings = demo_settings("127.0.0.1:8080", tmp_path)
    assert settings.ssl == "off"
    demo._announce(
        settings, "http://127.0.0.1:8080", None, "http://127.0.0.1:8080/client/1001?token=t"
    )
    shown = capsys.readouterr().out.splitlines()
    assert shown[:4] == [
        "gateway: http://127.0.0.1:8080",
        f"token: {settings.api_token}",
        f"staff token: {settings.staff_token}",
        f"vanity domain: {settings.vanity_domain}",
    ]
    assert "ssl: off (`apt-get install pebble` and the demo issues its certificates" in shown[5]


def test_with_pebble_the_settings_point_automatic_ssl_at_it(tmp_path: Path) -> None:
    ssl = demo_ssl.DemoSsl(tmp_path)
    ssl.pebble = demo_ssl.Pebble(
        tmp_path / "pebble", http_port=ssl.ports.http, tls_port=1, dns_server="127.0.0.1:1"
    )
    ssl.pebble.port = 14000  # as if started: its port chosen, its root and API CA written
    (tmp_path / "pebble").mkdir()
    for path in (ssl.pebble.roots_path, ssl.pebble.ca_bundle_path):
        path.write_text("-----BEGIN CERTIFICATE-----\n")
    settings = ssl.settings(demo_settings("127.0.0.1:8080", tmp_path))
    settings.check()
    assert settings.ssl == "auto"
    assert settings.acme_directory == "https://127.0.0.1:14000/dir"
    assert settings.acme_ca_bundle == str(tmp_path / "pebble" / "pebble-api-ca.pem")
    assert settings.trusted_roots == str(tmp_path / "pebble" / "pebble-roots.pem")
    assert settings.dns_resolvers == ssl.resolver.address
    assert (settings.http01_port, settings.tls_probe_port, settings.dns_authoritative_port) == (
        ssl.ports.http,
        ssl.ports.https,
        ssl.ports.dns,
    )


def test_a_demo_folder_made_without_ssl_keeps_its_nodes_where_they_were(tmp_path: Path) -> None:
    new, old = tmp_path / "new", tmp_path / "old"
    new.mkdir()
    (old / "nodes").mkdir(parents=True)  # a demo ran here before SSL: nodes on 127.0.0.1
    assert ssl_layout(new) and ssl_layout(new)  # marked at the first start, kept after
    assert not ssl_layout(old)
    assert "made without SSL" in ssl_off_line([]) and "rm -rf demo-data" in ssl_off_line([])
