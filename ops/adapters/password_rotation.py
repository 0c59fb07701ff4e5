"""``hostwright rotate-key``: every sealed password and private key still needed, sealed
afresh under the current secret key, so the retired keys (``HOSTWRIGHT_OLD_SECRET_KEYS``) can
be dropped.

Consumes the event store and a ``PasswordSealer`` holding the current key and the retired
ones. Emits ``Service.PasswordResealed`` on every service that is not terminated and holds a
password sealed under another key (a redeploy plans its steps from it), and
``Task.PasswordResealed`` on every task that may still run (open, or in error or cancelled:
a Try again re-dispatches it with the params it holds) and carries one;
``Certificate.KeyResealed`` for the key of each open order and current certificate of a
certificate not retired, and ``AcmeAccount.KeyResealed`` for every ACME account key (ARI
renewals need the same account, so losing its key costs every ``replaces``) — then a
``RotationReport``: what was re-sealed, and what live thing, if any, is still sealed under
another key. Events are immutable, so re-sealing is a new event, and it holds only the sealed
text and the key's id. Running it again re-seals nothing and says the same.

Run it once every process runs with the new key, since a process still on the old key seals
new orders under it; running it again afterwards tells whether anything was sealed meanwhile.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from eventsourcing.utils import get_topic

from domain.acme_account import AcmeAccount
from domain.certificate import Certificate
from domain.service import Service
from domain.task import Task
from ops.adapters.sealing import PasswordSealer, SealError
from ops.store.event_store import EventStore
from ops.store.unit_of_work import Decision


@dataclass
class RotationReport:
    key_id: str  # the current key's id
    services: list[str] = field(default_factory=list)  # service ids re-sealed
    tasks: list[str] = field(default_factory=list)  # task ids re-sealed
    keys: list[str] = field(default_factory=list)  # "certificate <id> order" / "acme account …"
    # "service 1001" / "task <id>" still sealed under another key once the pass is done (a
    # process on the old key sealed it meanwhile, or no key given opens it): by key id
    left: dict[str, str] = field(default_factory=dict)

    @property
    def old_keys_needed(self) -> bool:
        return bool(self.left)

    def lines(self) -> list[str]:
        """The report as the command prints it."""
        said = [f"current key: {self.key_id}"]
        said.append(_resealed("service password", self.services))
        said.append(_resealed("task", self.tasks))
        said.append(_resealed("private key", self.keys))
        if not self.left:
            said.append(
                "every live sealed password and key is under the current key: "
                "HOSTWRIGHT_OLD_SECRET_KEYS can be emptied"
            )
            return said
        said.append(f"{len(self.left)} still sealed under another key: keep the old keys")
        said += [f"  {name}: {key_id}" for name, key_id in sorted(self.left.items())]
        return said


def rotate_sealed_passwords(
    store: EventStore, sealer: PasswordSealer, now: datetime
) -> RotationReport:
    """Re-seals every live sealed password under the current key, then reads them all again
    to tell what, if anything, is still sealed under another key."""
    report = RotationReport(sealer.key_id)
    services = store.repository(Service, "service").get
    tasks = store.repository(Task, "task").get
    service_ids = list(
        _ids_with_a_password(store, Service.Ordered, Service.PasswordChangeRequested)
    )
    task_ids = list(_ids_with_a_password(store, Task.Planned))
    report.services = _reseal_each(store, sealer, services, service_ids, now)
    report.tasks = _reseal_each(store, sealer, tasks, task_ids, now)
    for get, ids in ((services, service_ids), (tasks, task_ids)):
        for aggregate_id in ids:
            aggregate = get(aggregate_id)
            key_id = _key_id_if_live(sealer, aggregate)
            if key_id is not None and key_id != sealer.key_id:
                report.left[_name(aggregate)] = key_id
    _rotate_private_keys(store, sealer.for_purpose("private-key"), now, report)
    return report


def _rotate_private_keys(
    store: EventStore, sealer: PasswordSealer, now: datetime, report: RotationReport
) -> None:
    """Re-seals the private keys of certificates and ACME accounts, then names any live one
    still under another key."""
    certificates = store.repository(Certificate, "certificate")
    accounts = store.repository(AcmeAccount, "ACME account")
    certificate_ids = list(_ids_of(store, Certificate.OrderPlaced, Certificate.CustomUploaded))
    account_ids = list(_ids_of(store, AcmeAccount.KeyCreated))
    for cert_id in certificate_ids:
        for slot in ("order", "current"):

            def decide(cert_id: uuid.UUID = cert_id, slot: str = slot) -> Decision[str | None]:
                cert = certificates.get(cert_id)
                text = _live_key(cert, slot)
                resealed = _resealed_text(sealer, text)
                if resealed is None or not cert.reseal_key(now, slot, resealed, sealer.key_id):
                    return Decision(None)
                return Decision(f"certificate {cert_id} {slot}", (cert,))

            _run(store, decide, cert_id, report)

    for account_id in account_ids:

        def decide_account(account_id: uuid.UUID = account_id) -> Decision[str | None]:
            account = accounts.get(account_id)
            resealed = _resealed_text(sealer, account.key_sealed)
            if resealed is None or not account.reseal_key(now, resealed, sealer.key_id):
                return Decision(None)
            return Decision(f"ACME account of {account.directory_url}", (account,))

        _run(store, decide_account, account_id, report)

    for cert_id in certificate_ids:
        cert = certificates.get(cert_id)
        for slot in ("order", "current"):
            _note_left(sealer, _live_key(cert, slot), f"certificate {cert_id} {slot} key", report)
    for account_id in account_ids:
        account = accounts.get(account_id)
        name = f"ACME account of {account.directory_url}"
        _note_left(sealer, account.key_sealed, name, report)


def _live_key(cert: Certificate, slot: str) -> str | None:
    """The sealed key a certificate still needs in ``slot`` (None: retired, or none held)."""
    held = cert.order if slot == "order" else cert.current
    if cert.retired or held is None:
        return None
    key: str | None = held.get("key_sealed")
    return key


def _resealed_text(sealer: PasswordSealer, text: str | None) -> str | None:
    if text is None:
        return None
    try:
        return sealer.reseal(text)
    except SealError:
        return None  # no key given opens it: the report names it


def _run(
    store: EventStore,
    decide: Callable[[], Decision[str | None]],
    aggregate_id: uuid.UUID,
    report: RotationReport,
) -> None:
    done = store.work.run(decide, busy=f"{aggregate_id} kept changing; run rotate-key again")
    if done is not None:
        report.keys.append(done)


def _note_left(sealer: PasswordSealer, text: str | None, name: str, report: RotationReport) -> None:
    if text is None:
        return
    try:
        key_id = sealer.key_id_of(text)
    except SealError:
        key_id = "unreadable: no key given opens it"
    if key_id != sealer.key_id:
        report.left[name] = key_id


def _ids_of(store: EventStore, *kinds: type[Any]) -> Iterator[uuid.UUID]:
    """The aggregates with an event of these kinds, each once, in the order first seen."""
    seen: set[uuid.UUID] = set()
    for notification in store.notifications_of(tuple(get_topic(kind) for kind in kinds)):
        aggregate_id = uuid.UUID(str(notification.originator_id))
        if aggregate_id not in seen:
            seen.add(aggregate_id)
            yield aggregate_id


def _reseal_each(
    store: EventStore,
    sealer: PasswordSealer,
    get: Callable[[uuid.UUID], Service | Task],
    ids: list[uuid.UUID],
    now: datetime,
) -> list[str]:
    """Re-seals each aggregate's password that is live and under another key; the ids (of
    services, or tasks) that recorded a ``PasswordResealed``."""
    resealed: list[str] = []
    for aggregate_id in ids:

        def decide(aggregate_id: uuid.UUID = aggregate_id) -> Decision[str | None]:
            aggregate = get(aggregate_id)
            sealed = aggregate.password_sealed
            if sealed is None or _key_id_if_live(sealer, aggregate) is None:
                return Decision(None)
            try:
                text = sealer.reseal(sealed)
            except SealError:
                return Decision(None)  # no key given opens it: the report names it
            if text is None or not aggregate.reseal_password(now, text, sealer.key_id):
                return Decision(None)
            return Decision(_id_of(aggregate), (aggregate,))

        done = store.work.run(decide, busy=f"{aggregate_id} kept changing; run rotate-key again")
        if done is not None:
            resealed.append(done)
    return resealed


def _key_id_if_live(sealer: PasswordSealer, aggregate: Service | Task) -> str | None:
    """The id of the key a live aggregate's password is sealed under (``v1`` for a text of
    before key ids, ``unreadable`` when no key given opens it); None when nothing of it is
    needed any more."""
    sealed = aggregate.password_sealed
    if sealed is None or not _live(aggregate):
        return None
    try:
        key_id = sealer.key_id_of(sealed)
    except SealError:
        return "unreadable: no key given opens it"
    return key_id if sealed.startswith("v2:") else f"v1 text under {key_id}"


def _live(aggregate: Service | Task) -> bool:
    if isinstance(aggregate, Service):
        return aggregate.status != "terminated"
    return aggregate.may_run_again


def _id_of(aggregate: Service | Task) -> str:
    """A service's WHMCS id, a task's id: what the API finds them by."""
    return aggregate.service_id if isinstance(aggregate, Service) else str(aggregate.id)


def _name(aggregate: Service | Task) -> str:
    kind = "service" if isinstance(aggregate, Service) else "task"
    return f"{kind} {_id_of(aggregate)}"


def _ids_with_a_password(store: EventStore, *kinds: type[Any]) -> Iterator[uuid.UUID]:
    """The aggregates given a sealed password by an event of these kinds (a service's order
    or its password change, a task's plan), each once."""
    seen: set[uuid.UUID] = set()
    for notification in store.notifications_of(tuple(get_topic(kind) for kind in kinds)):
        event: Any = store.decode(notification)
        if event.originator_id in seen:
            continue
        sealed = getattr(event, "password_sealed", None)
        if sealed is None and isinstance(getattr(event, "params", None), dict):
            sealed = event.params.get("password_sealed")
        if sealed:
            seen.add(event.originator_id)
            yield event.originator_id


def _resealed(what: str, names: list[str]) -> str:
    if not names:
        return f"re-sealed no {what}s"
    shown = ", ".join(names[:20]) + (f" and {len(names) - 20} more" if len(names) > 20 else "")
    return f"re-sealed {len(names)} {what}(s): {shown}"
