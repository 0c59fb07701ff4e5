"""The documents cannot rot silently: every relative link in README.md and docs/*.md names a
file inside the repository (a clone, a tarball or a fork has no ``../`` beyond it) and, with
a ``#fragment``, a heading that file has; and every route the gateway serves is named in
docs/api.md as ``METHOD /path``, so a new route without its reference fails here."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path
from typing import cast

import pytest
from starlette.routing import Route

from gateway.app import create_app
from gateway.ports import (
    CertificateLedger,
    CommandLedger,
    ServerBook,
    SettingsBook,
    SslViews,
    UsageRefresh,
    UsageViews,
)
from tests.fakes.view_queries import FakeViews
from tests.support.gateway import credentials_for_tests

ROOT = Path(__file__).resolve().parents[2]
DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
# [text](target) and [text](target "title"); images too. Reference-style definitions: [x]: target
_INLINE_LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
_REFERENCE_LINK = re.compile(r"^\s*\[[^\]]+\]:\s*<?(\S+?)>?(?:\s|$)", re.MULTILINE)
_EXTERNAL = re.compile(r"^[a-z][a-z0-9+.-]*:", re.IGNORECASE)  # https:, mailto:, …


def _prose(markdown: str) -> str:
    """The text outside fenced code blocks."""
    return re.sub(r"^\s*```.*?^\s*```", "", markdown, flags=re.MULTILINE | re.DOTALL)


def relative_links(markdown: str) -> list[str]:
    """The link targets of a Markdown text that are not a URL (no scheme), outside fenced
    code blocks: ``path``, ``path#heading`` or ``#heading``."""
    prose = _prose(markdown)
    targets = _INLINE_LINK.findall(prose) + _REFERENCE_LINK.findall(prose)
    return [target for target in targets if not _EXTERNAL.match(target)]


def heading_anchors(markdown: str) -> set[str]:
    """The anchors GitHub gives a document's headings: lowercase, punctuation but ``-`` and
    ``_`` dropped, spaces as ``-``."""
    anchors = set()
    for heading in re.findall(r"^#{1,6}\s+(.+?)\s*#*\s*$", _prose(markdown), re.MULTILINE):
        kept = re.sub(r"[^\w\- ]", "", heading.lower())
        anchors.add(kept.replace(" ", "-"))
    return anchors


def broken_links(document: Path, root: Path) -> list[str]:
    """The relative links of ``document`` that name no file or folder inside ``root``, or a
    heading its Markdown file does not have."""
    broken = []
    for target in relative_links(document.read_text(encoding="utf-8")):
        path, _, anchor = target.partition("#")
        resolved = (document.parent / path).resolve() if path else document
        if not _names_a_heading_of(resolved, anchor, root):
            broken.append(target)
    return broken


def _names_a_heading_of(path: Path, anchor: str, root: Path) -> bool:
    """True when ``path`` is inside ``root`` and exists, and a Markdown file with a heading
    ``anchor`` when one is given."""
    if not path.is_relative_to(root.resolve()) or not path.exists():
        return False
    if not anchor or path.suffix != ".md":
        return True
    return anchor in heading_anchors(path.read_text(encoding="utf-8"))


def test_a_link_to_a_heading_that_is_not_there_is_found(tmp_path: Path) -> None:
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "api.md").write_text(
        "# API\n\n### `GET /v1/services/{service_id}`\n\n## Runtime settings\n",
        encoding="utf-8",
    )
    document = tmp_path / "README.md"
    document.write_text(
        "[a](docs/api.md#get-v1servicesservice_id) [b](docs/api.md#runtime-settings)\n"
        "[c](docs/api.md#no-such-heading) [d](#api-reference)\n\n# API reference\n",
        encoding="utf-8",
    )

    assert broken_links(document, tmp_path) == ["docs/api.md#no-such-heading"]


def test_a_link_outside_the_repository_or_to_no_file_is_found(tmp_path: Path) -> None:
    repository = tmp_path / "repo"
    (repository / "docs").mkdir(parents=True)
    (repository / "docs" / "here.md").write_text("# A\n", encoding="utf-8")
    (tmp_path / "outside.md").write_text("x", encoding="utf-8")
    document = repository / "README.md"
    document.write_text(
        "[ok](docs/here.md#a) [anchor](#b) [web](https://example.com/x.md)\n"
        "[gone](docs/missing.md) [out](../outside.md)\n"
        "[ref]: docs/also-missing.md\n"
        "```\n[in code](nowhere.md)\n```\n# B\n",
        encoding="utf-8",
    )

    assert broken_links(document, repository) == [
        "docs/missing.md",
        "../outside.md",
        "docs/also-missing.md",
    ]


@pytest.mark.parametrize("document", DOCUMENTS, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_names_a_file_in_the_repository(document: Path) -> None:
    assert broken_links(document, ROOT) == []


def served_routes() -> list[str]:
    """``METHOD /path`` of every route ``create_app`` mounts when given every port."""
    app = create_app(
        ledger=cast(CommandLedger, object()),
        views=FakeViews(),
        credentials=credentials_for_tests(),
        clock=lambda: datetime(2026, 1, 1, tzinfo=UTC),
        servers=cast(ServerBook, object()),
        settings=cast(SettingsBook, object()),
        certificates=cast(CertificateLedger, object()),
        ssl_views=cast(SslViews, object()),
        usage=cast(UsageViews, object()),
        usage_refresh=cast(UsageRefresh, object()),
    )
    named = []
    for route in app.routes:
        assert isinstance(route, Route), route
        for method in sorted((route.methods or set()) - {"HEAD"}):
            named.append(f"{method} {route.path}")
    return named


def test_the_app_serves_the_routes_this_test_reads() -> None:
    routes = served_routes()

    assert "POST /v1/services" in routes
    assert "PUT /v1/settings" in routes
    assert "GET /healthz" in routes


def test_every_route_is_named_in_the_api_reference() -> None:
    reference = (ROOT / "docs" / "api.md").read_text(encoding="utf-8")

    missing = [route for route in served_routes() if f"`{route}`" not in reference]

    assert missing == [], f"docs/api.md names no {missing}"


def test_no_merge_placeholder_is_left_in_the_api_reference() -> None:
    """A ``TODO(merge)`` note marks what a branch in flight was to add; once merged, the
    reference says it, so a note left behind is a gap a reader would fall into."""
    reference = (ROOT / "docs" / "api.md").read_text(encoding="utf-8")

    left = [line for line in reference.splitlines() if "TODO(merge)" in line]

    assert left == [], f"docs/api.md still has {len(left)} TODO(merge) note(s): {left}"
