"""Which failed publishes may pass by themselves (ops/messaging/broker_publisher.py): only the
pipeline's kept task messages that failed so hold their attempt's lease."""

from __future__ import annotations

from ops.messaging.broker_publisher import transient_publish_error
from ops.messaging.transport import TransportError, Unroutable


def test_only_a_broker_error_other_than_unroutable_is_transient() -> None:
    assert transient_publish_error(TransportError("publish task.web.web1: connection lost"))
    assert not transient_publish_error(Unroutable("no queue is bound for 'task.web.web9'"))
    assert not transient_publish_error(TypeError("Object of type bytes is not JSON serializable"))
