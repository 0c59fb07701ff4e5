"""From a task's planned params to what its step action takes.

The planner (domain/deploy_plan.py) records only what is safe in events: a sealed password,
the hosting plan's quotas by our names, and for the DKIM record a reference to the DKIM
step's output. Just before the step runs, this turns them into what the node needs: the
password unsealed (or, with none ordered, a fresh one that is never reported), Hestia's
package keys, and the referenced value. Nothing here is ever logged or published.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Mapping
from typing import Any

from domain.hosting_plan import PACKAGE_KEYS
from handlers.step import StepParamsError

Unseal = Callable[[str], str]


def resolve_params(
    params: Mapping[str, Any], inputs: Mapping[str, Any], unseal: Unseal
) -> dict[str, Any]:
    resolved = dict(params)
    if "password_sealed" in resolved:
        sealed = resolved.pop("password_sealed")
        resolved["password"] = unseal(sealed) if sealed else secrets.token_urlsafe(18)
    if "plan" in resolved:
        plan = resolved.pop("plan")
        if not isinstance(plan, Mapping):
            raise StepParamsError("plan must be an object")
        resolved["quotas"] = {
            PACKAGE_KEYS[key]: value for key, value in plan.items() if key in PACKAGE_KEYS
        }
    if isinstance(resolved.get("aliases"), list):
        # Hestia takes aliases as one comma-separated argument; none at all = leave it out
        aliases = resolved.pop("aliases")
        if aliases:
            resolved["aliases"] = ",".join(aliases)
    if "records" in resolved:
        resolved["records"] = [_record(r, inputs) for r in resolved["records"]]
    return resolved


def _record(record: Any, inputs: Mapping[str, Any]) -> Any:
    if not isinstance(record, Mapping) or "value_from" not in record:
        return record
    source = record["value_from"]
    try:
        value = inputs[source["step"]][source["output"]]
    except (KeyError, TypeError):
        raise StepParamsError(
            f"record {record.get('record')!r} needs {source!r}, which its inputs lack"
        ) from None
    resolved = {k: v for k, v in record.items() if k != "value_from"}
    # a value that changes between runs (a new DKIM key) replaces the old one, never sits beside it
    return {**resolved, "value": value, "replace": True}
