"""What a caller may ask of a service's SSL, read and checked before anything is recorded.

``parse_custom(body)`` consumes the JSON body of ``PUT /v1/services/{id}/ssl/{role}/custom``
and emits a ``CustomUpload`` (PEM texts, not yet checked as certificates: that needs X.509
parsing, which lives outside the domain) or raises ``InvalidInput`` naming the field, never
quoting it. ``check_role`` refuses a role that has no certificate of its own.
``refuse_issue_while_rate_limited(cert, now)`` is the rule of ``POST …/ssl/{role}/issue``:
asking again lifts a freeze after failures (the aggregate's ``request_issue``), never one a
rate limit set (the CA's Retry-After, or our model of its limits), which raises ``Conflict``
with the time it ends.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from domain.certificate import FROZEN_BY_RATE_LIMIT, ROLES, Certificate
from domain.errors import Conflict, InvalidInput, NotFound


@dataclass(frozen=True)
class CustomUpload:
    """A customer's certificate, its private key (clear: sealed before it is recorded) and
    the intermediates. ``repr`` never shows the key."""

    certificate: str
    private_key: str = field(repr=False)
    chain: str = ""


def check_role(role: str) -> str:
    if role not in ROLES:
        raise NotFound(f"no certificate role {role!r}; the roles are {', '.join(ROLES)}")
    return role


def parse_custom(body: dict[str, Any]) -> CustomUpload:
    unknown = sorted(set(body) - {"certificate", "private_key", "chain"})
    if unknown:
        raise InvalidInput(f"unknown field(s): {', '.join(unknown)}")
    texts: dict[str, str] = {}
    for name, required in (("certificate", True), ("private_key", True), ("chain", False)):
        value = body.get(name)
        if value is None and not required:
            continue
        if not isinstance(value, str) or (required and not value.strip()):
            raise InvalidInput(f"{name} must be PEM text")
        texts[name] = value
    return CustomUpload(texts["certificate"], texts["private_key"], texts.get("chain", ""))


def refuse_issue_while_rate_limited(cert: Certificate, now: datetime) -> None:
    if cert.frozen_kind != FROZEN_BY_RATE_LIMIT or not cert.frozen(now):
        return
    assert cert.frozen_until is not None
    until = cert.frozen_until.astimezone(UTC)
    raise Conflict(
        f"the {cert.role} certificate is frozen by a rate limit until "
        f"{until:%Y-%m-%d %H:%M:%S} UTC ({cert.frozen_reason}); asking again does not lift it"
    )
