"""Headless Chromium for the screens' browser tests: Debian's ``chromium``, driven by Playwright.

Never a downloaded browser (no ``playwright install``): ``launch_chromium`` starts the one at
``CHROMIUM`` (``HOSTWRIGHT_TEST_CHROMIUM`` to point elsewhere), and a machine without it
fails the test with a message naming the package (.ci/run installs it), never skips it.

The ``browser`` fixture (import it into the test module) gives a test its own Chromium.
``Browser.page()`` opens a fresh context (its own cookies) and records what the page's scripts
log and throw; ``Browser.shot(page, name)`` saves a screenshot under the test's own folder, and
``save_readme_shot`` copies one to ``docs/screens/`` when ``HOSTWRIGHT_SAVE_SCREENSHOTS=1``
(the two the README shows: the splash and the console).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from playwright.async_api import Browser as PlaywrightBrowser
from playwright.async_api import BrowserContext, ConsoleMessage, Page, async_playwright

from tests.support.budget import budget
from tests.support.deployment import wait_until

CHROMIUM = os.environ.get("HOSTWRIGHT_TEST_CHROMIUM", "/usr/bin/chromium")
SAVE_SHOTS_ENV = "HOSTWRIGHT_SAVE_SCREENSHOTS"
README_SHOTS = Path(__file__).resolve().parents[2] / "docs" / "screens"
VIEWPORT = {"width": 1280, "height": 860}


class Browser:
    def __init__(self, browser: PlaywrightBrowser, shots: Path) -> None:
        self._browser = browser
        self.shots = shots
        self.errors: list[str] = []  # uncaught script errors and console errors, every page
        self._contexts: list[BrowserContext] = []

    async def page(self) -> Page:
        """A page in a context of its own: no cookie of another page."""
        context = await self._browser.new_context(viewport=VIEWPORT)  # type: ignore[arg-type]
        context.set_default_timeout(budget(15) * 1000)
        self._contexts.append(context)
        page = await context.new_page()
        page.on("pageerror", lambda exc: self.errors.append(f"page error: {exc}"))
        page.on("console", self._console)
        return page

    def _console(self, message: ConsoleMessage) -> None:
        if message.type == "error":
            self.errors.append(f"console error: {message.text}")

    async def shot(self, page: Page, name: str) -> Path:
        """A full-page screenshot ``<name>.png`` in the test's folder."""
        path = self.shots / f"{name}.png"
        await page.screenshot(path=str(path), full_page=True)
        return path

    async def close(self) -> None:
        for context in self._contexts:
            await context.close()
        await self._browser.close()


def save_readme_shot(shot: Path, name: str) -> Path | None:
    """``shot`` as ``docs/screens/<name>.png`` when ``HOSTWRIGHT_SAVE_SCREENSHOTS=1``."""
    if os.environ.get(SAVE_SHOTS_ENV) != "1":
        return None
    README_SHOTS.mkdir(parents=True, exist_ok=True)
    target = README_SHOTS / f"{name}.png"
    shutil.copyfile(shot, target)
    return target


def chromium_or_fail() -> str:
    """The Chromium binary, or an AssertionError saying how to get it (never a skip)."""
    found = shutil.which(CHROMIUM) if not os.path.isabs(CHROMIUM) else CHROMIUM
    if found is None or not os.access(found, os.X_OK):
        raise AssertionError(
            f"the browser tests need Debian's chromium at {CHROMIUM} "
            "(`apt-get install chromium`, as .ci/run does; or set HOSTWRIGHT_TEST_CHROMIUM); "
            "never `playwright install`"
        )
    return found


@asynccontextmanager
async def launch_chromium(shots: Path) -> AsyncIterator[Browser]:
    executable = chromium_or_fail()
    shots.mkdir(parents=True, exist_ok=True)
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(
            executable_path=executable, args=["--no-sandbox"], headless=True
        )
        browser = Browser(launched, shots)
        try:
            yield browser
        finally:
            await browser.close()


@pytest.fixture
async def browser(tmp_path: Path) -> AsyncIterator[Browser]:
    """Chromium for one test; its screenshots under the test's ``tmp_path/screenshots``."""
    async with launch_chromium(tmp_path / "screenshots") as launched:
        yield launched


async def eventually(
    condition: Callable[[], Awaitable[bool]], timeout: float, what: str, page: Page
) -> None:
    """Waits for ``condition`` (a few DOM reads); fails with the page's URL and text."""

    async def page_text() -> str:
        return await page.inner_text("body")

    try:
        await wait_until(condition, timeout, what)
    except AssertionError as exc:
        raise AssertionError(f"{exc}\nat {page.url}:\n{(await page_text())[:3000]}") from None
