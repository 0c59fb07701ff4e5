"""``hostwright bench deploy``: consumes the command line's settings, emits the report."""

from __future__ import annotations

from ops.devtools.bench.deploy.driver import run_deploy_bench

__all__ = ["run_deploy_bench"]
