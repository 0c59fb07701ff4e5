"""The browser tests' Chromium is Debian's or the test fails saying how to get it (never a
skip, never a download), and the README's screenshots are written only when asked for."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support import browser


def test_a_missing_chromium_fails_with_the_package_to_install(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(browser, "CHROMIUM", str(tmp_path / "no-chromium"))
    with pytest.raises(AssertionError, match=r"apt-get install chromium"):
        browser.chromium_or_fail()


def test_the_installed_chromium_is_found() -> None:
    assert browser.chromium_or_fail() == browser.CHROMIUM


def test_readme_screenshots_are_saved_only_when_asked_for(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    shot = tmp_path / "taken.png"
    shot.write_bytes(b"\x89PNG")
    monkeypatch.setattr(browser, "README_SHOTS", tmp_path / "docs" / "screens")
    monkeypatch.delenv(browser.SAVE_SHOTS_ENV, raising=False)
    assert browser.save_readme_shot(shot, "splash") is None
    assert not (tmp_path / "docs").exists()
    monkeypatch.setenv(browser.SAVE_SHOTS_ENV, "1")
    saved = browser.save_readme_shot(shot, "splash")
    assert saved == tmp_path / "docs" / "screens" / "splash.png"
    assert saved.read_bytes() == b"\x89PNG"
