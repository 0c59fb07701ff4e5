"""What the ``acme`` package (5.x) lacks for ARI renewals and rate limits, as subclasses of its own
messages and network.

- ``NewOrderReplacing``: a new order with RFC 9773's ``replaces`` (the certificate id it
  renews); ``profile`` is acme's own field.
- ``RenewalInfoExplained``: a ``renewalInfo`` answer with its ``explanationURL``.
- ``ProblemKeepingNetwork``: a ``ClientNetwork`` whose problems keep what the CA said. acme
  turns every 409 into ``ConflictError(Location)`` and drops ``Retry-After``; here a 409 with a
  problem body (``alreadyReplaced``) raises that problem, and every raised problem carries the
  HTTP ``status`` and ``retry_after`` (seconds from now, or None) as attributes.

Consumes and emits acme's own types (``messages.Error`` is mutable by design, GH #9539), so
acme's ``badNonce`` retry still works. ``handlers/acme_client.py`` is their only user.
"""

from __future__ import annotations

from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

from acme import client, messages
from josepy.errors import DeserializationError
from josepy.json_util import field

RETRY_AFTER = "Retry-After"


class NewOrderReplacing(messages.NewOrder):
    """A newOrder body; ``replaces`` is omitted when None."""

    replaces: str | None = field("replaces", omitempty=True)


class RenewalInfoExplained(messages.RenewalInfo):
    """A renewalInfo answer; ``explanation_url`` is None when the CA gives none."""

    explanation_url: str | None = field("explanationURL", omitempty=True)


def retry_after_s(value: str | None, now: datetime | None = None) -> float | None:
    """A ``Retry-After`` header (delta seconds or an HTTP date) as seconds from ``now``; None
    when absent or unreadable. A date in the past is 0."""
    if value is None or not value.strip():
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


class ProblemKeepingNetwork(client.ClientNetwork):
    """acme's network with problems that keep their status and ``Retry-After``."""

    @classmethod
    def _check_response(cls, response: Any, content_type: str | None = None) -> Any:
        if response.status_code == 409:
            problem = _problem_of(response)
            if problem is not None:
                raise _annotated(problem, response)
        try:
            return super()._check_response(response, content_type=content_type)
        except messages.Error as problem:
            raise _annotated(problem, response) from None


def _problem_of(response: Any) -> messages.Error | None:
    try:
        body = response.json()
    except ValueError:
        return None
    if not isinstance(body, dict) or "type" not in body:
        return None
    try:
        problem: messages.Error = messages.Error.from_json(body)
    except DeserializationError:
        return None
    return problem


def _annotated(problem: messages.Error, response: Any) -> messages.Error:
    problem.status = response.status_code
    problem.retry_after = retry_after_s(response.headers.get(RETRY_AFTER))
    return problem
