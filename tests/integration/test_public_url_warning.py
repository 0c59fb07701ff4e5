"""The gateway warns once, at start, when the screens have no public address: behind a TLS
proxy its client links would be http:// and its console cookie not Secure."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest

from ops.bootstrap import PUBLIC_URL_UNSET, System
from ops.settings import Settings


@pytest.mark.parametrize(("public_url", "warned"), [(None, True), ("https://panel.test", False)])
def test_a_gateway_without_a_public_url_says_so_in_one_line(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, public_url: str | None, warned: bool
) -> None:
    system = System(
        Settings(
            database_url=f"sqlite:///{tmp_path / 'store.sqlite'}",
            api_token="t" * 32,
            secret_key="a-secret-key-only-for-tests-0123456789",
            public_url=public_url,
        )
    )
    try:
        with caplog.at_level(logging.WARNING, logger="ops.bootstrap"):
            system.gateway()
    finally:
        asyncio.run(system.close())
    lines = [r.getMessage() for r in caplog.records if r.name == "ops.bootstrap"]
    assert lines == ([PUBLIC_URL_UNSET] if warned else [])
    assert all("\n" not in line for line in lines)
