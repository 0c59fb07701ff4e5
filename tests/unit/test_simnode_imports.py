"""The simulated node shares no code with what it checks.

A simulator that runs the handlers' own command code (or the domain's rules the handlers follow)
cannot catch their bugs: both sides would be wrong the same way. So ``ops/devtools/simnode``
imports nothing from the code behind the wire (handlers, domain, and the parts built on them);
what it knows of bash and of Hestia is its own. ``ops.runtime`` (the event loop it runs on) is
plumbing, not a rule, and may be shared.
"""

from __future__ import annotations

from tests.unit.test_layers import ROOT, _imports, _reaches

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
