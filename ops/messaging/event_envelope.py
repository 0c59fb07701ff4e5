"""The JSON envelope the relay wraps every stored event in, read back by a consumer.

``event_envelope`` consumes a message body and emits the envelope as a dict with at least
``topic``, ``aggregate_id`` and ``version`` (``data`` when the event has any); it raises
ValueError for anything else, which the consumer dead-letters (it will never read better).
"""

from __future__ import annotations

import json
from typing import Any


def event_envelope(body: bytes) -> dict[str, Any]:
    try:
        value = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"not a JSON event envelope: {exc}") from exc
    if not isinstance(value, dict) or not {"topic", "aggregate_id", "version"} <= set(value):
        raise ValueError("an event envelope needs topic, aggregate_id and version")
    return value
