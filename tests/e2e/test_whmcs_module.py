"""The WHMCS module (``gateway/whmcs/modules/servers/hostwright/``) against a real hostwright.

PHPUnit (Debian's ``phpunit``, with ``php-cli``, ``php-curl``, ``php-xml`` and ``php-mbstring``;
``.ci/run`` installs them) runs the module's tests in ``gateway/whmcs/tests/``: a bootstrap
stands in for WHMCS around the module, and the module talks over HTTP to the ``hostwright up``
this test starts on SQLite with one simulated unified node (vanity orders are only ordered,
never built: the label's claim is what the tests need). The gateway's address, the WHMCS
credential, the vanity domain, a port where nothing listens and the machine's time scale reach
PHPUnit in ``HOSTWRIGHT_WHMCS_TEST_*`` variables; its whole output is shown when it fails.
Every PHP file of the module and of its tests must pass ``php -l`` too.

The change-password tests are a PHPUnit group of their own, run by a test of their own: they
need the gateway's ``change-password`` command.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from ops.devtools.listen_ports import free_port
from tests.support.budget import budget, time_scale
from tests.support.deployment import PROVIDER_DOMAIN, Deployment
from tests.support.screens_deployment import EmbeddedDeployment, running_system

WHMCS = Path(__file__).resolve().parents[2] / "gateway" / "whmcs"
PHPUNIT_CONFIG = WHMCS / "tests" / "phpunit.xml"
CHANGE_PASSWORD = "change-password"

pytestmark = pytest.mark.slow


@pytest.fixture
async def system(tmp_path: Path) -> AsyncIterator[Deployment]:
    unstarted = EmbeddedDeployment(tmp_path)
    # a usage refresh always lists (none joins a listing made before the service was built)
    unstarted.settings["HOSTWRIGHT_USAGE_FRESH_S"] = "0"
    async with running_system(unstarted) as running:
        yield running


def test_every_php_file_of_the_module_is_valid_php() -> None:
    files = sorted(WHMCS.rglob("*.php"))
    assert len(files) >= 10, files
    for file in files:
        checked = subprocess.run(
            ["php", "-l", str(file)], capture_output=True, text=True, timeout=budget(30)
        )
        assert checked.returncode == 0, checked.stdout + checked.stderr


async def test_the_module_against_a_running_hostwright(system: Deployment) -> None:
    await run_phpunit(system, "--exclude-group", CHANGE_PASSWORD)


async def test_change_password_against_a_running_hostwright(system: Deployment) -> None:
    await run_phpunit(system, "--group", CHANGE_PASSWORD)


async def run_phpunit(system: Deployment, *selection: str) -> None:
    """PHPUnit's run of the module's tests against ``system``; fails with its output."""
    env = {
        **os.environ,
        "HOSTWRIGHT_WHMCS_TEST_GATEWAY": str(system.client.base_url).rstrip("/"),
        "HOSTWRIGHT_WHMCS_TEST_TOKEN": system.token,
        "HOSTWRIGHT_WHMCS_TEST_STAFF_TOKEN": system.staff_token,
        "HOSTWRIGHT_WHMCS_TEST_VANITY_DOMAIN": PROVIDER_DOMAIN,
        "HOSTWRIGHT_WHMCS_TEST_CLOSED_PORT": str(free_port()),
        "HOSTWRIGHT_WHMCS_TEST_TIME_SCALE": str(time_scale()),
    }
    # the simulated node runs in this event loop: PHPUnit is awaited, never waited on
    process = await asyncio.create_subprocess_exec(
        "phpunit",
        "--configuration",
        str(PHPUNIT_CONFIG),
        *selection,
        cwd=WHMCS / "tests",
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    try:
        output, _ = await asyncio.wait_for(process.communicate(), budget(600))
    finally:
        if process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            await process.wait()
    text = output.decode(errors="replace")
    assert process.returncode == 0, f"phpunit failed:\n{text}\n{system.logs()}"
    assert "OK (" in text, text  # no test skipped, incomplete or risky


def test_the_module_needs_no_php_extension_but_curl() -> None:
    """The README promises only php-curl: no mbstring (mb_*) or iconv call in the module."""
    module = WHMCS / "modules"
    for file in sorted(module.rglob("*.php")):
        text = file.read_text()
        found = re.findall(r"\b(?:mb_\w+|iconv\w*)\s*\(", text)
        assert not found, f"{file.relative_to(module)} calls {found}"
