"""What a run of tasks may start on a service, and what the service records when it ends.

Consumes: a Service, a run's kind and its Task aggregates (by step). Emits: whether a run may
start or must wait for the open one, each step's outcome, and the Service event that records
the outcome.

A run has a kind (its tasks' ``operation``): ``deploy`` (order, redeploy, verify & repair),
``reset`` (factory reset), ``suspend``, ``unsuspend``, ``change_plan``, ``change_password`` or
``terminate``. A new run supersedes the open one or waits for it to end (``waits_for``). A run
has ended when nothing more can happen in it: every task is final, or planned behind a step that
failed for good (``step_outcomes``). Then the service records the outcome once — each rule below
checks that it is still wanted, so settling the same run again (after a restart, a redelivery)
records nothing twice:

========== ============================ ==============================================
kind       every task succeeded         some task in error
========== ============================ ==============================================
deploy     Activated                    DeployFailed (the failed steps and errors)
reset      Activated                    DeployFailed
suspend    Suspended                    OperationFailed (status unchanged)
unsuspend  Unsuspended                  OperationFailed
change     PlanApplied                  OperationFailed
password   PasswordChanged              OperationFailed (``change_password``)
terminate  Terminated                   forced: Terminated with the leftovers listed;
                                        else OperationFailed once: it stays
                                        ``terminating`` and the scheduler tries the
                                        failed steps again
========== ============================ ==============================================
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime

from domain.service import Service
from domain.task import Task

DEPLOY_KINDS = ("deploy", "reset")
PENDING_OF = {"suspend": "suspend", "unsuspend": "unsuspend", "terminate": "terminate"}
# The Service events that start a run, and the run's kind.
RUN_STARTERS = {
    "Service.Ordered": "deploy",
    "Service.RedeployRequested": "deploy",
    "Service.VerifyRepairRequested": "deploy",
    "Service.FactoryResetRequested": "reset",
    "Service.SuspendRequested": "suspend",
    "Service.UnsuspendRequested": "unsuspend",
    "Service.PlanChangeRequested": "change_plan",
    "Service.PasswordChangeRequested": "change_password",
    "Service.TerminateRequested": "terminate",
}
# Task events staff record (Try again, cancel, force-fail of a stuck attempt, a password
# re-sealed by `hostwright rotate-key`): the pipeline takes the store's word for the task.
# Errored is also the pipeline's own; re-reading is cheap.
STAFF_TASK_TOPICS = ("Task.Retried", "Task.Cancelled", "Task.Errored", "Task.PasswordResealed")


@dataclass(frozen=True)
class StepOutcome:
    step: str
    server_id: str
    action: str
    state: str  # succeeded | error | cancelled | blocked (planned behind a failed step)
    error: str | None = None


def may_start(service: Service, kind: str) -> bool:
    """Whether a run of ``kind`` should be planned for the service as it is now."""
    if service.status == "terminated":
        return False
    if kind == "terminate":
        return True
    if service.status == "terminating":
        return False
    # a suspend asked for while the service is being built waits for the build
    building = service.status == "provisioning"
    suspended = service.status == "suspended" or (service.pending == "suspend" and not building)
    return not (kind in DEPLOY_KINDS and suspended)


def builds_first(service: Service, kind: str) -> bool:
    """Whether a run of ``kind`` must wait for the service to be built: a suspend, unsuspend,
    plan change or password change of a service still being built (ordered, redeployed,
    factory reset). Its deploy runs first; the request stays pending on the service and runs
    after it (a deploy keeps an existing user's password, so a password change always runs
    on its own)."""
    return service.status == "provisioning" and kind in (
        "suspend",
        "unsuspend",
        "change_plan",
        "change_password",
    )


def waits_for(kind: str, current: str) -> bool:
    """Whether a new run of ``kind`` waits for an open run of ``current`` to end rather than
    supersede it. A terminate, a redeploy or a factory reset supersede whatever runs; a
    suspend and an unsuspend supersede each other; anything else waits its turn, so a
    suspend never cuts a deploy short and a plan change never drops a suspend."""
    if kind == "terminate" or kind in DEPLOY_KINDS or kind == current:
        return False
    return {kind, current} != {"suspend", "unsuspend"}


def step_outcomes(kind: str, tasks: Mapping[str, Task]) -> list[StepOutcome] | None:
    """Each step's outcome (``tasks`` by step) once nothing more can happen in a run of
    ``kind`` (every task final, or planned behind a step that failed for good); None while
    something still can. A deploy has failed as soon as one step is in error: that is
    reported at once."""
    failed = {s for s, t in tasks.items() if t.state in ("error", "cancelled")}
    blocked: set[str] = set()
    changed = True
    while changed:  # planned tasks behind a failed step, however far behind
        changed = False
        for step, task in tasks.items():
            if step in blocked or task.state != "planned":
                continue
            if any(dep in failed or dep in blocked for dep in task.depends_on):
                blocked.add(step)
                changed = True
    early = kind in DEPLOY_KINDS and any(t.state == "error" for t in tasks.values())
    if not early and any(t.is_open and s not in blocked for s, t in tasks.items()):
        return None
    return [
        StepOutcome(
            step=step,
            server_id=task.server_id,
            action=task.action,
            state="blocked" if step in blocked else task.state,
            error=_blocked_by(task, failed | blocked) if step in blocked else task.error,
        )
        for step, task in tasks.items()
    ]


def record_outcome(
    service: Service, kind: str, steps: Iterable[StepOutcome], now: datetime
) -> bool:
    """Records what the ended run means for the service; False when nothing is to record.
    Each rule looks at what the service already says, not only at its pending request, so a
    run that ends well after a Try again is recorded too, and settling twice records once."""
    steps = list(steps)
    failed = [s for s in steps if s.state in ("error", "blocked")]
    if service.status == "terminated":
        return False
    if kind == "terminate":
        if failed and not service.forced:
            if service.terminate_failed:
                return False  # reported already; the scheduler keeps trying
            service.mark_operation_failed(now, kind, _reason(failed))
            return True
        service.mark_terminated(now, [_leftover(s) for s in failed])
        return True
    if service.status == "terminating":
        return False  # a terminate came after this run; it decides
    if kind in DEPLOY_KINDS:
        return _record_deploy(service, failed, now)
    if kind == "change_plan":
        return _record_plan_change(service, failed, now)
    if kind == "change_password":
        return _record_password_change(service, failed, now)
    if service.pending not in (None, kind):
        return False  # a newer, different request took over
    if failed:
        if service.pending != kind:
            return False  # reported already
        service.mark_operation_failed(now, kind, _reason(failed))
    elif kind == "suspend":
        if service.status == "suspended" and service.pending is None:
            return False
        service.mark_suspended(now)
    else:
        if service.status != "suspended" and service.pending is None:
            return False
        service.mark_unsuspended(now)
    return True


def pending_kind(service: Service) -> str | None:
    """The kind of run the service still waits for once its current run has ended (a
    suspend, unsuspend, plan change or password change asked for while another run was
    under way)."""
    if service.status == "terminated" or service.pending == "terminate":
        return None
    if service.pending in ("suspend", "unsuspend"):
        return service.pending
    if service.plan_pending:
        return "change_plan"
    return "change_password" if service.password_pending else None


def _record_plan_change(service: Service, failed: list[StepOutcome], now: datetime) -> bool:
    if failed:
        if service.plan_state != "pending":
            return False
        service.mark_operation_failed(now, "change_plan", _reason(failed))
        return True
    if service.plan_state == "applied":
        return False
    service.mark_plan_applied(now)
    return True


def _record_password_change(service: Service, failed: list[StepOutcome], now: datetime) -> bool:
    if failed:
        if service.login_state != "pending":
            return False
        service.mark_operation_failed(now, "change_password", _reason(failed))
        return True
    if service.login_state == "applied":
        return False
    service.mark_password_changed(now)
    return True


def _record_deploy(service: Service, failed: list[StepOutcome], now: datetime) -> bool:
    queued = service.pending in ("suspend", "unsuspend")
    if service.status == "suspended" or (queued and service.status != "provisioning"):
        return False
    # A service being built records how its build ended even with a suspend or unsuspend
    # queued behind it; Activated and DeployFailed keep that request pending: it runs next.
    if failed:
        if service.status == "deploy_failed" and service.pending is None:
            return False
        service.mark_deploy_failed(now, _reason(failed))
        return True
    recorded = False
    if service.status != "active" or (service.pending is not None and not queued):
        service.mark_active(now)
        recorded = True
    if service.plan_pending:  # a plan change that arrived during the deploy rode along
        service.mark_plan_applied(now)
        recorded = True
    return recorded


def _blocked_by(task: Task, failed: set[str]) -> str:
    return "not attempted: it depends on " + ", ".join(d for d in task.depends_on if d in failed)


def _reason(failed: list[StepOutcome]) -> str:
    return "; ".join(f"{s.step}: {s.error}" for s in failed if s.state == "error")


def _leftover(step: StepOutcome) -> dict[str, str]:
    return {
        "server_id": step.server_id,
        "step": step.step,
        "action": step.action,
        "error": step.error or "",
    }
