"""What a customer may change of their own service (the client area), and what their
Try again runs again.

Pure rules over a service's ``status`` and ``requested`` run (the store's word: a suspend
or terminate asked for counts from the moment it is recorded, not once a view shows it)
and over a failed deploy's tasks:

- ``customer_may_change``: nothing is changed by a customer while the service is suspended,
  terminating or terminated, nor once a suspend or a terminate is asked for;
- ``customer_may_retry_deploy``: Try again only on ``deploy_failed``, under the rule above;
- ``customer_retries``: Try again runs again the steps that failed (``error``), never one
  that staff cancelled, nor one deleted from the queue, nor another service's.
"""

from __future__ import annotations

from domain.task import Task

READ_ONLY_STATUSES = ("suspended", "terminating", "terminated")
STOPPING_REQUESTS = ("suspend", "terminate")


def customer_may_change(status: str, requested: str | None) -> bool:
    """Whether a customer's action may be recorded on a service in this state."""
    return status not in READ_ONLY_STATUSES and requested not in STOPPING_REQUESTS


def customer_may_retry_deploy(status: str, requested: str | None) -> bool:
    """Whether a customer's Try again may be recorded: the deploy failed, and nothing stops
    the service."""
    return status == "deploy_failed" and customer_may_change(status, requested)


def customer_retries(task: Task, service_id: str) -> bool:
    """Whether a customer's Try again on ``service_id`` runs ``task`` again."""
    return task.service_id == service_id and task.state == "error" and not task.hidden
