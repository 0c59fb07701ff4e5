"""DESIGN.md's layer table, enforced by reading every module's imports.

domain/      stdlib (no I/O modules) + eventsourcing.domain; no clock reads
projections/ stdlib + domain
gateway/     stdlib + domain + projections + the HTTP framework
handlers/    domain + their drivers' libraries; never gateway, projections or ops

and inside ops/ (what a part may not reach for):
ops/store, ops/messaging  no handlers, gateway, adapters, services or devtools
ops/devtools              imported by nothing that runs in production: only by ops/cli.py
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PROJECT = {"domain", "handlers", "projections", "gateway", "ops"}
IO_MODULES = {
    "asyncio",
    "io",
    "os",
    "pathlib",
    "socket",
    "sqlite3",
    "ssl",
    "subprocess",
    "http",
    "urllib",
    "shutil",
    "tempfile",
    "time",
    "logging",
    "select",
    "selectors",
    "signal",
    "threading",
    "multiprocessing",
    "random",
    "secrets",
}
CLOCK_CALLS = {"now", "utcnow", "today", "time", "monotonic", "perf_counter"}

RULES: dict[str, dict[str, set[str]]] = {
    # layer: {"project": allowed project packages, "third_party": allowed third-party roots}
    "domain": {"project": {"domain"}, "third_party": {"eventsourcing.domain"}},
    "projections": {"project": {"domain", "projections"}, "third_party": set()},
    "gateway": {
        "project": {"domain", "projections", "gateway"},
        "third_party": {"starlette", "jinja2", "markupsafe"},  # markupsafe: jinja2's Markup
    },
    "handlers": {
        "project": {"domain", "handlers"},
        "third_party": {"asyncssh", "dns", "acme", "josepy", "cryptography", "httpx"},
    },
}


def _imports(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.lineno, node.module))
    return found


def _violations(layer: str) -> list[str]:
    rule = RULES[layer]
    problems = []
    for path in sorted((ROOT / layer).rglob("*.py")):
        for line, module in _imports(path):
            root = module.split(".")[0]
            where = f"{path.relative_to(ROOT)}:{line} imports {module}"
            if root == "__future__":
                continue
            if root in PROJECT:
                if root not in rule["project"]:
                    problems.append(where)
            elif root in sys.stdlib_module_names:
                if layer == "domain" and root in IO_MODULES:
                    problems.append(where + " (I/O in the domain)")
            elif not any(
                module == t or module.startswith(t + ".") or root == t for t in rule["third_party"]
            ):
                problems.append(where)
    return problems


# ops sub-package: project import prefixes it must not use
OPS_FORBIDDEN: dict[str, tuple[str, ...]] = {
    "ops/store": ("handlers", "gateway", "ops.adapters", "ops.services", "ops.devtools"),
    "ops/messaging": ("handlers", "gateway", "ops.adapters", "ops.services", "ops.devtools"),
}
DEVTOOLS_IMPORTERS = {"ops/cli.py"}


def _reaches(module: str, prefix: str) -> bool:
    return module == prefix or module.startswith(prefix + ".")


def _ops_violations(package: str) -> list[str]:
    problems = []
    for path in sorted((ROOT / package).rglob("*.py")):
        for line, module in _imports(path):
            if any(_reaches(module, prefix) for prefix in OPS_FORBIDDEN[package]):
                problems.append(f"{path.relative_to(ROOT)}:{line} imports {module}")
    return problems


def _devtools_importers() -> list[str]:
    problems = []
    for layer in sorted(PROJECT):
        for path in sorted((ROOT / layer).rglob("*.py")):
            where = str(path.relative_to(ROOT))
            if where.startswith("ops/devtools/") or where in DEVTOOLS_IMPORTERS:
                continue
            for line, module in _imports(path):
                if _reaches(module, "ops.devtools"):
                    problems.append(f"{where}:{line} imports {module}")
    return problems


@pytest.mark.parametrize("package", sorted(OPS_FORBIDDEN))
def test_ops_store_and_messaging_reach_no_handler_or_service(package: str) -> None:
    assert _ops_violations(package) == []


def test_devtools_are_imported_by_the_command_line_only() -> None:
    assert _devtools_importers() == []


@pytest.mark.parametrize("layer", sorted(RULES))
def test_layer_imports_only_what_the_design_allows(layer: str) -> None:
    assert _violations(layer) == []


def test_the_domain_reads_no_clock() -> None:
    calls = []
    for path in sorted((ROOT / "domain").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr in CLOCK_CALLS
            ):
                calls.append(f"{path.relative_to(ROOT)}:{node.lineno} calls .{node.func.attr}()")
    assert calls == []


def test_the_checker_catches_a_reach_across(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The rules must be able to fail: a gateway module importing ops is flagged."""
    fake_root = tmp_path
    (fake_root / "gateway").mkdir()
    (fake_root / "gateway" / "bad.py").write_text("from ops.store.event_store import EventStore\n")
    (fake_root / "domain").mkdir()
    (fake_root / "domain" / "bad.py").write_text("import sqlite3\n")
    monkeypatch.setattr(sys.modules[__name__], "ROOT", fake_root)
    assert _violations("gateway") == ["gateway/bad.py:1 imports ops.store.event_store"]
    assert _violations("domain") == ["domain/bad.py:1 imports sqlite3 (I/O in the domain)"]
    (fake_root / "ops" / "messaging").mkdir(parents=True)
    (fake_root / "ops" / "messaging" / "bad.py").write_text("from handlers.pipeline import X\n")
    (fake_root / "ops" / "services").mkdir()
    (fake_root / "ops" / "services" / "bad.py").write_text("import ops.devtools.demo\n")
    assert _ops_violations("ops/messaging") == ["ops/messaging/bad.py:1 imports handlers.pipeline"]
    assert _devtools_importers() == ["ops/services/bad.py:1 imports ops.devtools.demo"]


# The simulated node shares no code with what it checks.
# The simulated node shares no code with what it checks.
#
# A simulator that runs the handlers' own command code (or the domain's rules the handlers follow)
# cannot catch their bugs: both sides would be wrong the same way. So ``ops/devtools/simnode``
# imports nothing from the code behind the wire (handlers, domain, and the parts built on them);
# what it knows of bash and of Hestia is its own. ``ops.runtime`` (the event loop it runs on) is
# plumbing, not a rule, and may be shared.

SIMNODE = "ops/devtools/simnode"
CHECKED = ("handlers", "domain", "projections", "gateway", "ops")
SHARED = ("ops.devtools.simnode", "ops.runtime")


def _reaches_outside(module: str) -> bool:
    checked = any(_reaches(module, prefix) for prefix in CHECKED)
    return checked and not any(_reaches(module, prefix) for prefix in SHARED)


def test_the_simulated_node_imports_none_of_the_code_it_checks() -> None:
    found = [
        f"{path.relative_to(ROOT)}:{line} imports {module}"
        for path in sorted((ROOT / SIMNODE).rglob("*.py"))
        for line, module in _imports(path)
        if _reaches_outside(module)
    ]
    assert found == []


def test_the_check_sees_a_handler_import() -> None:
    assert _reaches_outside("handlers.hestia_session")
    assert _reaches_outside("domain.hosting_plan")
    assert _reaches_outside("ops.services.handler")
    assert not _reaches_outside("ops.devtools.simnode.shell")
