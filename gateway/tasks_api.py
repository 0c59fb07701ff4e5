"""The deploy timeline and the task queue over HTTP: reads of their views, and staff's
retry / cancel of one task.

``task_routes`` consumes the ports (ViewQueries for the timeline and task-queue views, a
CommandLedger to record ``Task.Retried`` / ``Task.Cancelled``) and a clock, and emits the
routes ``create_app`` mounts:

- ``GET /v1/services/{id}/timeline`` → ``{"service_id", "steps": [...]}``, 404 for an
  unknown service;
- ``GET /v1/tasks?state=&service_id=&server_id=&limit=`` → ``{"tasks": [...]}``, 400 for a
  state that no task can be in;
- ``GET /v1/tasks/{task_id}`` → the task with its ``log``; 404 when unknown;
- ``POST /v1/tasks/{task_id}/{retry|cancel}`` → 202 ``{"result": "success"}``; 404 for an
  unknown task (or an id that is not a UUID), 409 when the task's state refuses it.
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
from gateway.ports import CommandLedger, ViewQueries
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
    "error",
)


class BadQuery(Exception):
    """A query parameter cannot be read as the contract says (HTTP 400)."""


def task_routes(
    *,
    ledger: CommandLedger,
    views: ViewQueries,
    clock: Callable[[], datetime],
    actor: str,
) -> list[Route]:
    """The timeline and task routes over ``views`` (reads) and ``ledger`` (retry / cancel)."""

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
            raise BadQuery(f"state must be one of {', '.join(TASK_STATES)}")
        service_id = request.query_params.get("service_id") or None
        server_id = request.query_params.get("server_id") or None
        limit = _limit(request)
        found = await asyncio.to_thread(
            lambda: views.tasks(
                state=state, service_id=service_id, server_id=server_id, limit=limit
            )
        )
        return ApiJSONResponse({"tasks": [_pick(task, TASK_FIELDS) for task in found]})

    async def show_task(request: Request) -> Response:
        task_id = _task_id(request)
        found = await asyncio.to_thread(views.task, task_id)
        if found is None:
            raise NotFound(f"task {task_id} not found")
        return ApiJSONResponse({**_pick(found, TASK_FIELDS), "log": found.get("log") or []})

    async def change_task(request: Request) -> Response:
        action: str = request.path_params["action"]
        changes = {"retry": ledger.retry_task, "cancel": ledger.cancel_task}
        if action not in changes:
            return error(404, f"unknown task action {action!r}")
        task_id = _task_id(request)
        await asyncio.to_thread(changes[action], task_id, clock(), actor)
        return success()

    return [
        Route("/v1/services/{service_id}/timeline", timeline, methods=["GET"]),
        Route("/v1/tasks", list_tasks, methods=["GET"]),
        Route("/v1/tasks/{task_id}", show_task, methods=["GET"]),
        Route("/v1/tasks/{task_id}/{action}", change_task, methods=["POST"]),
    ]


def _task_id(request: Request) -> str:
    """The path's task id in its one text form; a malformed id names no task (404)."""
    raw: str = request.path_params["task_id"]
    try:
        return str(uuid.UUID(raw))
    except ValueError:
        raise NotFound(f"task {raw} not found") from None


def _limit(request: Request) -> int:
    raw = request.query_params.get("limit")
    if not raw:
        return DEFAULT_TASKS_LIMIT
    if not raw.isdigit() or int(raw) < 1:
        raise BadQuery(f"limit must be a whole number from 1 to {MAX_TASKS_LIMIT}")
    return min(int(raw), MAX_TASKS_LIMIT)


def _pick(row: dict[str, Any], names: tuple[str, ...]) -> dict[str, Any]:
    return {name: row.get(name) for name in names}
