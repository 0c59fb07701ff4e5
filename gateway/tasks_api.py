"""The deploy timeline and the task queue over HTTP: reads of their views, and staff's
retry / cancel of one task and bulk changes to the queue.

``task_routes`` consumes the ports (ViewQueries for the timeline and task-queue views, a
CommandLedger to record ``Task.Retried`` / ``Task.Cancelled`` / ``Task.Hidden`` /
``Task.Errored``), a clock and the queue's default ages, and emits the routes ``create_app``
mounts:

- ``GET /v1/services/{id}/timeline`` → ``{"service_id", "steps": [...]}``, 404 for an
  unknown service (the services scope; every task route below is staff's, its GETs read's too);
- ``GET /v1/tasks?state=&service_id=&server_id=&stuck=&limit=`` → ``{"tasks": [...]}``,
  latest ``limit`` (default 200, at most 1000) oldest first; 400 for a state no task can be
  in, a ``stuck`` other than ``true`` / ``false``, a bad ``limit``. Each task has ``stuck``
  (open, its lease ran out, no sign of life from a handler since) and ``stuck_since``.
  Deleted (hidden) tasks are not listed;
- ``GET /v1/tasks/{task_id}`` → the task with its ``log``; 404 when unknown or deleted;
- ``POST /v1/tasks/{task_id}/{retry|cancel}`` → 202 ``{"result": "success"}``; 404 for an
  unknown or deleted task (or an id that is not a UUID), 409 when the task's state refuses it;
- ``POST /v1/tasks/bulk`` ``{"action", "older_than_s"?, "service_id"?, "server_id"?}`` →
  202 ``{"result": "success", "action", "matched", "changed", "task_ids"}``. ``action`` is
  ``delete_succeeded`` / ``delete_failed`` / ``delete_cancelled`` (hide tasks finished in
  that state at least ``older_than_s`` ago, default 0), ``clean_completed`` (hide every
  finished task older than ``older_than_s``, default the ``clean_completed_after_s``
  setting) or ``force_fail_stuck`` (put in error every task stuck for at least
  ``older_than_s``, default the ``stuck_after_s`` setting; its late result is ignored).
  ``matched`` counts the tasks the queue view proposed, ``changed`` and ``task_ids`` those
  recorded (the task itself decides: one that moved on meanwhile is left alone). Hiding
  removes a task from the queue's reads only: its events stay, and so do its timeline step
  and the audit replay. An unknown action or field, or a bad number or id, is 422 and
  records nothing; a body that is not a JSON object is 400.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from datetime import datetime
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from domain.errors import NotFound
from domain.task import FINAL_STATES, OPEN_STATES
from domain.task_bulk import BulkDefaults, ChangeTasksInBulk, QueueAges, parse_bulk
from gateway.auth import actor_of, guarded_route
from gateway.credentials import SERVICES, STAFF
from gateway.ports import CommandLedger, ViewQueries
from gateway.request_parsing import BadRequest, query_limit, read_json_object
from gateway.responses import ApiJSONResponse, error, success

TASK_STATES = (*OPEN_STATES, *FINAL_STATES)
DEFAULT_TASKS_LIMIT = 200
MAX_TASKS_LIMIT = 1000

# what a timeline step and a task show, as the contract has them
STEP_FIELDS = (
    "task_id",
    "role",
    "action",
    "server_id",
    "state",
    "attempts",
    "started_at",
    "finished_at",
    "duration_ms",
    "error",
)
TASK_FIELDS = (
    "task_id",
    "service_id",
    "run",
    "step",
    "role",
    "action",
    "server_id",
    "state",
    "attempts",
    "created_at",
    "started_at",
    "finished_at",
    "due_at",
    "lease_expires_at",
    "stuck",
    "stuck_since",
    "error",
)
STUCK_VALUES = {"true": True, "false": False}


def task_routes(
    *,
    ledger: CommandLedger,
    views: ViewQueries,
    clock: Callable[[], datetime],
    queue_ages: Callable[[], QueueAges] | None = None,
) -> list[Route]:
    """The timeline and task routes over ``views`` (reads) and ``ledger`` (changes).
    ``queue_ages`` gives the bulk actions' default ages when asked, as settings may change
    (``BulkDefaults`` when not given)."""
    ages_now: Callable[[], QueueAges] = queue_ages or BulkDefaults

    async def timeline(request: Request) -> Response:
        service_id: str = request.path_params["service_id"]
        steps = await asyncio.to_thread(views.timeline, service_id)
        if steps is None:
            raise NotFound(f"service {service_id} not found")
        return ApiJSONResponse(
            {"service_id": service_id, "steps": [_pick(step, STEP_FIELDS) for step in steps]}
        )

    async def list_tasks(request: Request) -> Response:
        state = request.query_params.get("state") or None
        if state is not None and state not in TASK_STATES:
            raise BadRequest(f"state must be one of {', '.join(TASK_STATES)}")
        service_id = request.query_params.get("service_id") or None
        server_id = request.query_params.get("server_id") or None
        stuck = _stuck(request)
        limit = query_limit(request, default=DEFAULT_TASKS_LIMIT, most=MAX_TASKS_LIMIT)
        now = clock()
        found = await asyncio.to_thread(
            lambda: views.tasks(
                state=state,
                service_id=service_id,
                server_id=server_id,
                stuck=stuck,
                limit=limit,
                now=now,
            )
        )
        return ApiJSONResponse({"tasks": [_pick(task, TASK_FIELDS) for task in found]})

    async def show_task(request: Request) -> Response:
        task_id = _task_id(request)
        found = await asyncio.to_thread(views.task, task_id, clock())
        if found is None:
            raise NotFound(f"task {task_id} not found")
        return ApiJSONResponse({**_pick(found, TASK_FIELDS), "log": found.get("log") or []})

    async def change_task(request: Request) -> Response:
        action: str = request.path_params["action"]
        changes = {"retry": ledger.retry_task, "cancel": ledger.cancel_task}
        if action not in changes:
            return error(404, f"unknown task action {action!r}")
        task_id = _task_id(request)
        await asyncio.to_thread(changes[action], task_id, clock(), actor_of(request))
        return success()

    async def bulk(request: Request) -> Response:
        body = await read_json_object(request)
        outcome = await asyncio.to_thread(
            change_in_bulk, ledger, views, body, ages=ages_now, now=clock(), actor=actor_of(request)
        )
        return success(**outcome)

    return [
        guarded_route("/v1/services/{service_id}/timeline", timeline, method="GET", area=SERVICES),
        guarded_route("/v1/tasks", list_tasks, method="GET", area=STAFF),
        guarded_route("/v1/tasks/bulk", bulk, method="POST", area=STAFF),
        guarded_route("/v1/tasks/{task_id}", show_task, method="GET", area=STAFF),
        guarded_route("/v1/tasks/{task_id}/{action}", change_task, method="POST", area=STAFF),
    ]


def _task_id(request: Request) -> str:
    """The path's task id in its one text form; a malformed id names no task (404)."""
    raw: str = request.path_params["task_id"]
    try:
        return str(uuid.UUID(raw))
    except ValueError:
        raise NotFound(f"task {raw} not found") from None


def change_in_bulk(
    ledger: CommandLedger,
    views: ViewQueries,
    body: object,
    *,
    ages: Callable[[], QueueAges],
    now: datetime,
    actor: str,
) -> dict[str, Any]:
    """A bulk action (``POST /v1/tasks/bulk``'s body, the console's bulk forms): validated,
    its candidates found, recorded; ``{action, matched, changed, task_ids}``. InvalidInput,
    recording nothing, for a body ``parse_bulk`` refuses. Synchronous (call it in a thread)."""
    command = parse_bulk(body, now=now, actor=actor, defaults=ages())
    candidates = _candidates(views, command)
    changed = ledger.change_tasks(command, candidates)
    return {
        "action": command.action,
        "matched": len(candidates),
        "changed": len(changed),
        "task_ids": changed,
    }


def _candidates(views: ViewQueries, command: ChangeTasksInBulk) -> list[str]:
    """The tasks the queue view proposes for a bulk action (each then decides for itself)."""
    if command.forces_failure:
        return views.task_ids(
            stuck_before=command.cutoff,
            service_id=command.service_id,
            server_id=command.server_id,
        )
    return views.task_ids(
        states=command.states,
        finished_before=command.cutoff,
        service_id=command.service_id,
        server_id=command.server_id,
    )


def _stuck(request: Request) -> bool | None:
    raw = request.query_params.get("stuck")
    if not raw:
        return None
    if raw not in STUCK_VALUES:
        raise BadRequest("stuck must be true or false")
    return STUCK_VALUES[raw]


def _pick(row: dict[str, Any], names: tuple[str, ...]) -> dict[str, Any]:
    return {name: row.get(name) for name in names}
