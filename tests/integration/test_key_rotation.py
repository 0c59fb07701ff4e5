"""``hostwright rotate-key`` on a real store (SQLite and PostgreSQL): after it, every live
password opens with the new key alone — the services' (a redeploy plans from them) and those
in the params of every task that may still run (a Try again dispatches them) — while what is
no longer needed (a terminated service, a succeeded or deleted task) is left as it was.
It records only sealed texts and key ids, and a second run changes nothing."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from domain.acme_account import AcmeAccount
from domain.certificate import Certificate
from domain.commands import parse_lifecycle, parse_order
from domain.retry_policy import RetryPolicy
from domain.server import parse_server
from domain.ssl_types import CertificateFacts, SslCadence
from domain.task import Task
from handlers.pipeline_dispatch import task_message
from handlers.pipeline_runs import Run
from handlers.step_params import resolve_params
from ops.adapters.command_ledger import StoreLedger
from ops.adapters.deploy_planner import DeployPlanner
from ops.adapters.sealing import PasswordSealer, private_key_sealer
from ops.adapters.server_registry import ServerRegistry
from ops.cli import main
from ops.store.event_store import EventStore
from tests.support.gateway import PASSWORD, START, order

OLD_KEY = "an-old-secret-key-of-32-characters!"
NEW_KEY = "a-new-secret-key-of-32-characters!!"
# sealed by the sealer of before key ids (v1) under OLD_KEY
V1_UNDER_OLD_KEY = "v1:fKYQ7mEEjiOt6AEsuGCjuyJwYaNUvUYoEtCNLyQ0vHQVngWv1wTgGgjm-w=="
ED25519 = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKvkcWkh33XP+nVwAr39SKD2LH3ynKCVGsuxXwfRfERU"
POLICY = RetryPolicy(max_attempts=1, initial_backoff_s=1, max_backoff_s=1)
LATER = START + timedelta(minutes=1)


@dataclass
class Estate:
    """What the store holds before the rotation, all sealed under the old key."""

    store: EventStore
    planner: DeployPlanner
    errored: Task  # the password step of a run, in error: staff may Try again
    planned: Task  # the same step in another run, not yet run
    succeeded: Task
    hidden: Task


def own_order(service_id: int, **changes: Any) -> dict[str, Any]:
    """An order body whose domain and username are the service's own (names are claimed)."""
    names = {"domain": f"shop{service_id}.example.com", "username": f"shop{service_id}"}
    return order(service_id=service_id, **names, **changes)


@pytest.fixture
def estate(database_url: str) -> Iterator[Estate]:
    store = EventStore(database_url)
    try:
        yield _build(store)
    finally:
        store.close()


def _build(store: EventStore) -> Estate:
    old = PasswordSealer(OLD_KEY)
    ledger = StoreLedger(store, old)
    registry = ServerRegistry(store)
    registry.register(
        parse_server(
            {
                "server_id": "node1",
                "roles": ["web", "mail", "dns"],
                "host": "node1.example.net",
                "port": 22,
                "username": "admin",
                "host_key": ED25519,
                "ip": "192.0.2.10",
                "max_concurrency": 4,
            },
            now=START,
            actor="admin",
        )
    )
    for service_id in (1001, 1003):
        ledger.order_service(parse_order(own_order(service_id), now=START, actor="whmcs"))
    ledger.order_service(parse_order(own_order(1002, password=None), now=START, actor="whmcs"))
    store.order_service(parse_order(own_order(1004), now=START, actor="whmcs"), V1_UNDER_OLD_KEY)
    gone = store.get_service("1003")
    gone.mark_terminated(START, [])
    store.save(gone)

    planner = DeployPlanner(registry, None)
    service = store.get_service("1001")
    placement = planner.place(service)
    service.place(START, placement)
    (user_step,) = [
        s for s in planner.steps(service, placement, "deploy") if "password_sealed" in s.params
    ]
    errored, planned, succeeded, hidden = (
        Task.plan(
            service_id="1001",
            run=run,
            step=user_step.step,
            role=user_step.role,
            action=user_step.action,
            server_id=user_step.server_id,
            params=user_step.params,
            depends_on=[],
            now=START,
        )
        for run in (1, 2, 3, 4)
    )
    errored.dispatch(START, 30)
    errored.fail(1, START, error="exit 1", retryable=False, log=[], policy=POLICY, unit_random=0)
    succeeded.dispatch(START, 30)
    succeeded.succeed(1, START, changed=True, log=[])
    hidden.cancel(START, "staff")
    hidden.hide(START, "staff", "bulk delete")
    store.save(service, errored, planned, succeeded, hidden)
    return Estate(store, planner, errored, planned, succeeded, hidden)


def rotate_key(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    database_url: str,
    *old_keys: str,
) -> tuple[int, str]:
    monkeypatch.chdir(tmp_path)  # no hostwright.toml of the machine's
    monkeypatch.setenv("HOSTWRIGHT_DATABASE_URL", database_url)
    monkeypatch.setenv("HOSTWRIGHT_SECRET_KEY", NEW_KEY)
    monkeypatch.setenv("HOSTWRIGHT_OLD_SECRET_KEYS", ",".join(old_keys))
    capsys.readouterr()
    code = main(["rotate-key"])
    return code, capsys.readouterr().out


def test_after_rotate_key_every_live_password_opens_with_the_new_key_alone(
    estate: Estate,
    database_url: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    store, new_only = estate.store, PasswordSealer(NEW_KEY)
    before = store.max_notification_id()

    code, out = rotate_key(monkeypatch, capsys, tmp_path, database_url, OLD_KEY)

    assert code == 0, out
    assert "re-sealed 2 service password(s): 1001, 1004" in out
    assert "re-sealed 2 task(s)" in out
    assert str(estate.errored.id) in out and str(estate.planned.id) in out
    assert "HOSTWRIGHT_OLD_SECRET_KEYS can be emptied" in out
    assert store.max_notification_id() == before + 4
    for service_id in ("1001", "1004"):
        assert new_only.unseal(store.get_service(service_id).password_sealed or "") == PASSWORD
    # a redeploy plans its steps from the service: they carry the new text
    service = store.get_service("1001")
    assert service.placement is not None
    for spec in estate.planner.steps(service, service.placement, "deploy"):
        if spec.params.get("password_sealed"):
            assert resolve_params(spec.params, {}, new_only.unseal)["password"] == PASSWORD
    # a Try again of the errored step dispatches it with its re-sealed params
    errored = store.repository(Task, "task").get(estate.errored.id)
    assert errored.retry(LATER, "staff")
    attempt = errored.dispatch(LATER, 30)
    run = Run("1001", errored.run, "deploy", {errored.step: errored})
    message = task_message(run, errored, attempt)
    assert resolve_params(message.params, message.inputs, new_only.unseal)["password"] == PASSWORD
    planned = store.repository(Task, "task").get(estate.planned.id)
    assert new_only.unseal(planned.password_sealed or "") == PASSWORD
    # what no longer runs is left as it was
    old_key_id = PasswordSealer(OLD_KEY).key_id
    assert PasswordSealer(OLD_KEY).key_id_of(store.get_service("1003").password_sealed or "")
    for kept in (estate.succeeded, estate.hidden):
        text = store.repository(Task, "task").get(kept.id).password_sealed or ""
        assert text.startswith(f"v2:{old_key_id}:")
    assert store.get_service("1002").password_sealed is None
    # the new events hold sealed texts and the key id, never the password
    for notification in store.notifications(before, 100):
        assert PASSWORD.encode() not in notification.state
        assert PASSWORD not in store.envelope(notification).decode()
    resealed = store.events_of("1001")[-1]
    assert resealed["topic"] == "Service.PasswordResealed"
    assert resealed["data"] == {"key_id": new_only.key_id}


def test_rotate_key_twice_records_nothing_the_second_time_and_then_needs_no_old_key(
    estate: Estate,
    database_url: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    assert rotate_key(monkeypatch, capsys, tmp_path, database_url, OLD_KEY)[0] == 0
    after_first = estate.store.max_notification_id()

    code, out = rotate_key(monkeypatch, capsys, tmp_path, database_url, OLD_KEY)
    assert code == 0, out
    assert "re-sealed no service passwords" in out and "re-sealed no tasks" in out
    assert estate.store.max_notification_id() == after_first

    code, out = rotate_key(monkeypatch, capsys, tmp_path, database_url)  # old key dropped
    assert code == 0, out
    assert "can be emptied" in out


def test_rotate_key_without_the_old_key_re_seals_nothing_and_names_what_it_cannot_open(
    estate: Estate,
    database_url: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    before = estate.store.max_notification_id()
    code, out = rotate_key(monkeypatch, capsys, tmp_path, database_url)
    assert code == 1
    assert "still sealed under another key: keep the old keys" in out
    assert "service 1001: unreadable" in out and "service 1004: unreadable" in out
    assert f"task {estate.errored.id}: unreadable" in out
    assert "service 1003" not in out  # terminated: not needed
    assert estate.store.max_notification_id() == before
    assert OLD_KEY not in out and NEW_KEY not in out


# --- private keys: certificates and the ACME account ----------------------------------------

KEY_PEM = "-----BEGIN PRIVATE KEY-----\nTESTKEY\n-----END PRIVATE KEY-----\n"


def _certificate(service_id: str) -> Certificate:
    return Certificate.seed(
        service_id=service_id,
        role="web",
        names=[f"shop{service_id}.example.com"],
        install=None,
        dns_targets=[],
        http01=None,
        expected_addresses=[],
        cadence=SslCadence(),
        now=START,
        actor="deploy",
    )


def test_rotate_key_re_seals_the_private_keys_of_live_certificates_and_the_account(
    database_url: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    old_keys = private_key_sealer(OLD_KEY)
    store = EventStore(database_url)
    try:
        live = _certificate("2001")
        live.place_order(
            START, order_url="o/1", names=live.names, key_sealed=old_keys.seal(KEY_PEM)
        )
        live.issued(
            START,
            certificate="C",
            chain="",
            facts=CertificateFacts(
                "1f", START, START + timedelta(days=90), ("a",), None, "CN=x", None, "00"
            ),
            cadence=SslCadence(),
        )
        live.place_order(
            START, order_url="o/2", names=live.names, key_sealed=old_keys.seal(KEY_PEM)
        )
        retired = _certificate("2002")
        retired.place_order(
            START, order_url="o/3", names=retired.names, key_sealed=old_keys.seal(KEY_PEM)
        )
        retired.retire(START)
        account = AcmeAccount.create("https://acme.example/dir", old_keys.seal(KEY_PEM), START)
        store.save(live, retired, account)
        before = store.max_notification_id()

        code, out = rotate_key(monkeypatch, capsys, tmp_path, database_url, OLD_KEY)
        assert code == 0, out
        assert "re-sealed 3 private key(s)" in out
        assert f"certificate {live.id} order" in out and f"certificate {live.id} current" in out
        assert "ACME account of https://acme.example/dir" in out
        assert str(retired.id) not in out  # retired: its key is needed no more

        new_only = private_key_sealer(NEW_KEY)
        certificates = store.repository(Certificate, "certificate")
        again = certificates.get(live.id)
        assert again.order is not None and again.current is not None
        assert new_only.unseal(again.order["key_sealed"]) == KEY_PEM
        assert new_only.unseal(again.current["key_sealed"]) == KEY_PEM
        assert (
            new_only.unseal(store.repository(AcmeAccount, "a").get(account.id).key_sealed)
            == KEY_PEM
        )
        for notification in store.notifications(before, 100):
            body = store.envelope(notification).decode()
            assert "key_sealed" not in body and "PRIVATE KEY" not in body

        assert (
            rotate_key(monkeypatch, capsys, tmp_path, database_url, OLD_KEY)[1].count(
                "re-sealed no private keys"
            )
            == 1
        )
        code, out = rotate_key(monkeypatch, capsys, tmp_path, database_url)  # old key dropped
        assert code == 0, out
    finally:
        store.close()


def test_rotate_key_names_a_private_key_no_given_key_opens(
    database_url: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    store = EventStore(database_url)
    try:
        store.save(
            AcmeAccount.create(
                "https://acme.example/dir", private_key_sealer(OLD_KEY).seal(KEY_PEM), START
            )
        )
    finally:
        store.close()
    code, out = rotate_key(monkeypatch, capsys, tmp_path, database_url)
    assert code == 1
    assert "ACME account of https://acme.example/dir: unreadable" in out
    assert OLD_KEY not in out and KEY_PEM not in out


def test_rotate_key_re_seals_a_password_given_by_a_change_password(
    database_url: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    """A service ordered without a password that got one from ``change-password`` holds a
    live sealed password too: rotate-key finds it by that event and re-seals it."""
    new_password = "Changed-later-1"
    store = EventStore(database_url)
    try:
        ledger = StoreLedger(store, PasswordSealer(OLD_KEY))
        ledger.order_service(parse_order(own_order(1005, password=None), now=START, actor="w"))
        body = {"password": new_password}
        ledger.request(parse_lifecycle("change-password", "1005", body, now=LATER, actor="w"))
        code, out = rotate_key(monkeypatch, capsys, tmp_path, database_url, OLD_KEY)
        assert code == 0, out
        assert "re-sealed 1 service password(s): 1005" in out
        sealed = store.get_service("1005").password_sealed or ""
        assert PasswordSealer(NEW_KEY).unseal(sealed) == new_password
    finally:
        store.close()
