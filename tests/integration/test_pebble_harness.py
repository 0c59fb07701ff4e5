"""The pebble harness leaves nothing running: a test that fails inside it, and a pebble that
dies before it is ready, both end with the process reaped."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from ops.devtools.pebble import Pebble, PebbleError, free_port
from tests.support.run_leftovers import RUN_MARK, this_run
from tests.support.static_dns import StaticDns

pytestmark = pytest.mark.slow


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def _pebble(tmp_path: Path, dns: StaticDns, **options: str) -> Pebble:
    return Pebble(
        tmp_path / "pebble",
        http_port=free_port(),
        tls_port=free_port(),
        dns_server=dns.address,
        env={RUN_MARK: str(this_run())},
        **options,  # type: ignore[arg-type]
    )


def test_a_failing_test_inside_leaves_no_pebble(tmp_path: Path) -> None:
    dns = StaticDns().start()
    pebble = _pebble(tmp_path, dns)
    try:
        with pytest.raises(RuntimeError, match="the test failed"), pebble:
            assert pebble.running and pebble.orders_created() == 0
            assert "BEGIN CERTIFICATE" in pebble.roots_path.read_text()
            assert "BEGIN CERTIFICATE" in pebble.intermediates_path.read_text()
            pid = pebble._proc.pid if pebble._proc else -1
            raise RuntimeError("the test failed")
    finally:
        dns.stop()
    assert not pebble.running and _gone(pid)
    assert "Disabling random VA sleeps" in pebble.log()
    assert "reject 0% of good nonces" in pebble.log()


def test_a_pebble_that_dies_at_start_is_an_error_and_is_reaped(tmp_path: Path) -> None:
    dns = StaticDns().start()
    try:
        pebble = _pebble(tmp_path, dns, executable="/bin/false")
        with pytest.raises(PebbleError, match="exited before it was ready"):
            pebble.start()
    finally:
        dns.stop()
    assert not pebble.running and pebble._proc is None


def test_no_pebble_installed_is_an_error_that_says_what_to_install(tmp_path: Path) -> None:
    dns = StaticDns().start()
    try:
        pebble = _pebble(tmp_path, dns, executable=str(tmp_path / "no-pebble"))
        with pytest.raises(PebbleError, match="apt-get install pebble"):
            pebble.start()
    finally:
        dns.stop()
