"""The task queue in the staff console: the live list, its bulk controls, one task's detail
and its log streamed live while its step runs.

Consumes the ``ScreenPorts`` (the task-queue view, the ledger, the runtime settings' queue
ages, ``task_logs`` when the handlers publish log lines) and emits:

- ``GET /admin/tasks?state=&service_id=&server_id=&stuck=`` — the queue (checked as
  ``GET /v1/tasks`` checks them), with the counts by state and the bulk forms;
  ``&fragment=1`` is the table alone (what a live update swaps in; read once per change for
  all pages: ``console_live.shared_fragment``);
- ``POST /admin/tasks/bulk`` — a bulk action (``action`` as ``delete-succeeded`` …, the
  ``confirm`` box ticked, optional ``older_than_s``) run by ``tasks_api.change_in_bulk``,
  the API's own code: a 303 to the queue, which says how many tasks matched and changed
  (reloading it runs nothing again);
- ``GET /admin/tasks/{task_id}`` — the task with its recorded log; ``POST …/retry|cancel``;
- ``GET /admin/tasks/{task_id}/log`` — server-sent events: ``event: line`` for each line the
  running step logs (``LiveTaskLog.follow``), then ``event: ended`` with the task's recorded
  state and log as JSON once the step is no longer running (at once when it is not, or when
  the gateway has no ``task_logs``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route

from domain.errors import Conflict, InvalidInput, NotFound
from domain.task_bulk import BULK_ACTIONS, BulkDefaults, QueueAges
from gateway.responses import refusal_message, refusal_status
from gateway.screens.console_live import shared_fragment
from gateway.screens.console_session import console_page, done, form_of, session_of, signed_in
from gateway.screens.event_stream import event_stream
from gateway.screens.rendering import PAGE_HEADERS, render
from gateway.tasks_api import STUCK_VALUES, TASK_STATES, change_in_bulk

if TYPE_CHECKING:
    from gateway.screens.screen_ports import ScreenPorts

QUEUE_LIMIT = 200
RUNNING = "dispatched"  # the state of a task whose step a handler runs now
# a log stream reads its task when the service changed (once for every page on that task and
# position: ``LiveFeed.shared``), and, should the feed miss one, after this long without
STATE_FALLBACK_S = 30.0
BULK_FORMS = tuple(action.replace("_", "-") for action in BULK_ACTIONS)


def queue_routes(ports: ScreenPorts) -> list[Route]:
    def ages() -> QueueAges:
        return BulkDefaults() if ports.settings is None else ports.settings.current().queue

    async def queue(request: Request) -> Response:
        return await _queue_page(ports, request)

    async def bulk(request: Request) -> Response:
        form = form_of(request)
        action = form.get("action", "").replace("-", "_")
        if form.get("confirm") != "yes":
            failure = "Tick the confirmation box to run a bulk action."
            return await _queue_page(ports, request, failure=failure, status_code=422)
        body: dict[str, Any] = {"action": action}
        older = form.get("older_than_s", "").strip()
        try:
            if older:
                body["older_than_s"] = float(older)
            outcome = await asyncio.to_thread(
                change_in_bulk,
                ports.ledger,
                ports.views,
                body,
                ages=ages,
                now=ports.clock(),
                actor=session_of(request).name,
            )
        except InvalidInput as exc:
            return await _queue_page(
                ports, request, failure=refusal_message(exc), status_code=refusal_status(exc)
            )
        except ValueError:
            failure = "older_than_s must be a number"
            return await _queue_page(ports, request, failure=failure, status_code=422)
        said = (
            f"{action.replace('_', ' ')}: {outcome['matched']} matched, "
            f"{outcome['changed']} changed."
        )
        return done(request, "/admin/tasks", said)

    async def task(request: Request) -> Response:
        return await _task_page(ports, request)

    async def change(request: Request) -> Response:
        action: str = request.path_params["action"]
        changes = {"retry": ports.ledger.retry_task, "cancel": ports.ledger.cancel_task}
        if action not in changes:
            return await _task_page(ports, request, failure=f"unknown task action {action!r}")
        try:
            task_id = _task_id(request)
            await asyncio.to_thread(
                changes[action], task_id, ports.clock(), session_of(request).name
            )
        except (NotFound, Conflict) as exc:
            return await _task_page(
                ports, request, failure=refusal_message(exc), status_code=refusal_status(exc)
            )
        return done(request, f"/admin/tasks/{task_id}", f"The task's {action} is recorded.")

    async def log(request: Request) -> Response:
        try:
            task_id = _task_id(request)
        except NotFound as exc:
            return Response(str(exc), status_code=404)
        found = await asyncio.to_thread(ports.views.task, task_id, ports.clock())
        if found is None:
            return Response(f"task {task_id} not found", status_code=404)
        return event_stream(request, _log_events(ports, found))

    return [
        Route("/admin/tasks", signed_in(ports, queue), methods=["GET"]),
        Route("/admin/tasks/bulk", signed_in(ports, bulk, writes=True), methods=["POST"]),
        Route("/admin/tasks/{task_id}", signed_in(ports, task), methods=["GET"]),
        Route("/admin/tasks/{task_id}/log", signed_in(ports, log), methods=["GET"]),
        Route(
            "/admin/tasks/{task_id}/{action}",
            signed_in(ports, change, writes=True),
            methods=["POST"],
        ),
    ]


async def _log_events(ports: ScreenPorts, task: dict[str, Any]) -> AsyncIterator[tuple[str, str]]:
    """The running step's lines as they come, then the recorded log once it has ended."""
    task_id = str(task["task_id"])

    async def read_task() -> dict[str, Any] | None:
        return await asyncio.to_thread(ports.views.task, task_id, ports.clock())

    if task["state"] == RUNNING and ports.task_logs is not None:
        lines = ports.task_logs.follow(task_id)
        with ports.live.watch(str(task["service_id"])) as watch:
            line: asyncio.Future[str] | None = asyncio.ensure_future(anext(lines))
            tick = asyncio.ensure_future(watch.next(STATE_FALLBACK_S))
            try:
                while True:
                    waiting: set[asyncio.Future[Any]] = {tick} if line is None else {line, tick}
                    done, _ = await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
                    if line is not None and line in done:
                        try:
                            yield "line", line.result()
                            line = asyncio.ensure_future(anext(lines))
                        except StopAsyncIteration:
                            # no live lines to be had (the broker is away): the page waits
                            # for the step to end and shows its recorded log
                            line = None
                    if tick in done:
                        position = tick.result()
                        now = (
                            await read_task()
                            if position is None
                            else await ports.live.shared(f"task:{task_id}", position, read_task)
                        )
                        if now is None or now["state"] != RUNNING:
                            break
                        tick = asyncio.ensure_future(watch.next(STATE_FALLBACK_S))
            finally:
                for pending in (line, tick):
                    if pending is None:
                        continue
                    pending.cancel()
                    with contextlib.suppress(BaseException):
                        await pending
                aclose = getattr(lines, "aclose", None)
                if aclose is not None:
                    await aclose()
        task = await read_task() or task
    ended = {"state": task["state"], "log": task.get("log") or []}
    yield "ended", json.dumps(ended)


async def _queue_page(
    ports: ScreenPorts,
    request: Request,
    *,
    flash: str | None = None,
    failure: str | None = None,
    status_code: int = 200,
) -> Response:
    params = request.query_params
    filters = {name: params.get(name) or None for name in ("state", "service_id", "server_id")}
    stuck_text = params.get("stuck") or None
    context: dict[str, Any] = {
        **{name: value or "" for name, value in filters.items()},
        "stuck": stuck_text or "",
        "states": TASK_STATES,
        "bulk_forms": BULK_FORMS,
    }
    if filters["state"] is not None and filters["state"] not in TASK_STATES:
        failure, filters["state"] = f"state must be one of {', '.join(TASK_STATES)}", None
        status_code = 400
    if stuck_text is not None and stuck_text not in STUCK_VALUES:
        failure, stuck_text, status_code = "stuck must be true or false", None, 400
    stuck = None if stuck_text is None else STUCK_VALUES[stuck_text]
    context["live_position"] = ports.live.position  # before the read: see console_live

    async def read() -> dict[str, Any]:
        now = ports.clock()
        tasks = await asyncio.to_thread(
            lambda: ports.views.tasks(**filters, stuck=stuck, limit=QUEUE_LIMIT, now=now)
        )
        counts = Counter(task["state"] for task in tasks)
        return {"tasks": tasks, "counts": counts, "stuck_count": sum(t["stuck"] for t in tasks)}

    if params.get("fragment") and request.method == "GET":

        async def fragment() -> str:
            return render("console/queue_table.html", **context, **await read())

        html = await shared_fragment(ports, request, fragment)
        return HTMLResponse(html, headers=PAGE_HEADERS)
    context.update(await read())
    return console_page(
        request,
        "console/queue.html",
        here="tasks",
        flash=flash,
        failure=failure,
        status_code=status_code,
        **context,
    )


async def _task_page(
    ports: ScreenPorts,
    request: Request,
    *,
    flash: str | None = None,
    failure: str | None = None,
    status_code: int = 200,
) -> Response:
    try:
        task_id = _task_id(request)
    except NotFound as exc:
        task_id, failure, status_code = None, str(exc), 404
    found = None
    if task_id is not None:
        found = await asyncio.to_thread(ports.views.task, task_id, ports.clock())
    if found is None:
        return console_page(
            request,
            "console/message.html",
            here="tasks",
            status_code=404,
            failure=failure or f"task {task_id} not found",
        )
    return console_page(
        request,
        "console/task.html",
        here="tasks",
        flash=flash,
        failure=failure,
        status_code=status_code,
        task=found,
        streams=found["state"] == RUNNING and ports.task_logs is not None,
    )


def _task_id(request: Request) -> str:
    raw: str = request.path_params["task_id"]
    try:
        return str(uuid.UUID(raw))
    except ValueError:
        raise NotFound(f"task {raw} not found") from None
