"""The certificate installer against a simulated Hestia node over real SSH: v-add on a domain
without SSL, v-change on one with it, nothing run for the serial already there, the private
folder gone after success and failure, Hestia's own Let's Encrypt refused, installs on one node
serialised by the node's fence, and the private key in no log line and no error."""

from __future__ import annotations

import asyncio
import posixpath
import shlex
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509

from domain.ssl_requests import CustomUpload
from domain.ssl_types import InstallTarget, PemBundle
from handlers.hestia_command import CommandResult, PermanentNodeError, TransientNodeError
from handlers.hestia_driver import HestiaDriver
from handlers.ssl_install import CertificateInstaller, certificate_of, install_fence_key
from handlers.ssl_ports import InstallOutcome
from handlers.step import StepLog
from handlers.step_fence import LocalFences
from ops.adapters.certificate_inspector import CertificateInspector
from ops.devtools.mini_ca import Leaf, MiniCa
from ops.devtools.simnode import Faults, SimNode, read_command_log
from tests.support.budget import budget
from tests.support.simnode_driver import node_and_driver

USER, DOMAIN, OTHER = "alice", "shop.test", "other.test"
WEB = InstallTarget("web1", "web", USER, DOMAIN)
MAIL = InstallTarget("web1", "mail", USER, DOMAIN)


@dataclass
class Env:
    node: SimNode
    driver: HestiaDriver
    installer: CertificateInstaller
    ca: MiniCa

    def bundle(self, names: list[str]) -> tuple[PemBundle, Leaf]:
        leaf = self.ca.leaf(names)
        return PemBundle(leaf.certificate_pem, self.ca.certificate_pem), leaf

    def commands(self) -> list[list[str]]:
        return [entry["argv"] for entry in read_command_log(self.node.data_dir)]

    def folder(self, target: InstallTarget) -> Path:
        # the SFTP root is the login's home on the simulated node
        return self.node.data_dir / "fs" / self.installer.temp_folder(target)


@pytest.fixture
async def env(tmp_path: Path) -> AsyncIterator[Env]:
    node, driver = await node_and_driver(tmp_path, command_timeout=10.0)
    try:
        for argv in (
            ["v-add-user", USER, "pw", f"{USER}@example.com"],
            ["v-add-web-domain", USER, DOMAIN],
            ["v-add-web-domain", USER, OTHER],
            ["v-add-mail-domain", USER, DOMAIN, "no", "no", "no"],
        ):
            await driver.check(argv)
        installer = CertificateInstaller(LocalFences(), poll_s=0.02)
        yield Env(node, driver, installer, MiniCa().intermediate())
    finally:
        await driver.close()
        await node.stop()


def _secret_parts(key_pem: str) -> list[str]:
    """The key and each of its base64 lines: none may show anywhere."""
    return [key_pem, *(line for line in key_pem.splitlines() if "PRIVATE KEY" not in line)]


def _clean(text: str, key_pem: str) -> bool:
    return not any(part in text for part in _secret_parts(key_pem) if part)


async def test_add_then_change_and_the_same_serial_runs_nothing(env: Env) -> None:
    assert await env.installer.installed(env.driver, WEB) is None
    bundle, leaf = env.bundle([DOMAIN, f"www.{DOMAIN}"])
    log = StepLog()
    assert await env.installer.install(env.driver, WEB, bundle, leaf.key_pem, log)
    facts = await env.installer.installed(env.driver, WEB)
    assert facts is not None and facts.names == (DOMAIN, f"www.{DOMAIN}")
    folder = "/" + env.installer.temp_folder(WEB)  # under the login's home, "/" here
    assert ["v-add-web-domain-ssl", USER, DOMAIN, folder] in env.commands()
    assert not env.folder(WEB).exists()

    before = len(env.commands())
    again = StepLog()
    done = await env.installer.install(env.driver, WEB, bundle, leaf.key_pem, again)
    assert done is InstallOutcome.ALREADY and done.on_node
    assert {argv[0] for argv in env.commands()[before:]} == {"v-list-web-domain-ssl"}
    assert "installed already" in again.lines[-1]

    renewed, renewed_leaf = env.bundle([DOMAIN, f"www.{DOMAIN}"])
    assert await env.installer.install(env.driver, WEB, renewed, renewed_leaf.key_pem, log)
    assert env.commands()[-2][:1] == ["v-change-web-domain-sslcert"]
    after = await env.installer.installed(env.driver, WEB)
    assert after is not None and after.serial != facts.serial
    assert not env.folder(WEB).exists()
    for key in (leaf.key_pem, renewed_leaf.key_pem):
        assert _clean("\n".join(log.lines + again.lines), key)


@pytest.mark.parametrize("planted", ["open to all", "a link"])
async def test_a_planted_parent_folder_is_refused_and_the_key_goes_nowhere(
    env: Env, planted: str
) -> None:
    fs = env.node.data_dir / "fs"
    parent = fs / posixpath.dirname(env.installer.temp_folder(WEB))
    parent.parent.mkdir(mode=0o700)
    trap = fs / "tmp/trap"
    trap.mkdir(parents=True)
    if planted == "a link":
        parent.symlink_to(trap)
    else:
        parent.mkdir()
        parent.chmod(0o777)  # someone else could swap the folder in it
    bundle, leaf = env.bundle([DOMAIN])
    with pytest.raises(PermanentNodeError, match="not a folder of ours"):
        await env.installer.install(env.driver, WEB, bundle, leaf.key_pem, StepLog())
    written = [p for p in fs.rglob("*") if p.is_file() and leaf.key_pem in p.read_text()]
    assert written == [] and not any(trap.iterdir())
    assert await env.installer.installed(env.driver, WEB) is None


async def test_a_custom_upload_as_recorded_installs_though_sent_as_a_shuffled_full_chain(
    env: Env,
) -> None:
    root = MiniCa("custom root")
    upper = root.intermediate("upper intermediate")
    lower = upper.intermediate("lower intermediate")
    leaf = lower.leaf([DOMAIN])
    upload = CustomUpload(  # the chain inside the certificate, and in the wrong order
        certificate=leaf.certificate_pem + upper.certificate_pem,
        private_key=leaf.key_pem,
        chain=root.certificate_pem + lower.certificate_pem,
    )
    checked = CertificateInspector(root.certificate_pem).check(upload, [DOMAIN], root.now)
    assert checked.bundle == PemBundle(
        leaf.certificate_pem, lower.certificate_pem + upper.certificate_pem
    )
    done = await env.installer.install(env.driver, WEB, checked.bundle, leaf.key_pem, StepLog())
    assert done is InstallOutcome.INSTALLED  # Hestia's checks passed


async def test_mail_is_installed_with_the_mail_commands(env: Env) -> None:
    bundle, leaf = env.bundle([f"mail.{DOMAIN}", f"webmail.{DOMAIN}"])
    log = StepLog()
    assert await env.installer.install(env.driver, MAIL, bundle, leaf.key_pem, log)
    assert env.commands()[-2][:3] == ["v-add-mail-domain-ssl", USER, DOMAIN]
    facts = await env.installer.installed(env.driver, MAIL)
    assert facts is not None and facts.names == (f"mail.{DOMAIN}", f"webmail.{DOMAIN}")
    assert await env.installer.installed(env.driver, WEB) is None  # the site has none
    renewed, renewed_leaf = env.bundle([f"mail.{DOMAIN}", f"webmail.{DOMAIN}"])
    assert await env.installer.install(env.driver, MAIL, renewed, renewed_leaf.key_pem, log)
    assert env.commands()[-2][0] == "v-change-mail-domain-sslcert"


async def test_the_listing_parser_drops_the_key_hestia_prints(env: Env) -> None:
    bundle, leaf = env.bundle([DOMAIN])
    await env.installer.install(env.driver, WEB, bundle, leaf.key_pem, StepLog())
    listing = await env.driver.list_json(["v-list-web-domain-ssl", USER, DOMAIN])
    assert listing[DOMAIN]["KEY"]  # Hestia prints it in clear ...
    assert certificate_of(listing, DOMAIN) == bundle.certificate.strip()
    assert "KEY" not in listing[DOMAIN]  # ... and the parser drops it at once


async def test_the_folder_goes_and_the_key_stays_out_of_errors_when_an_install_fails(
    env: Env,
) -> None:
    bundle, leaf = env.bundle([DOMAIN])
    stranger = env.ca.leaf([DOMAIN]).key_pem  # not this certificate's key
    log = StepLog()
    with pytest.raises(PermanentNodeError) as refused:
        await env.installer.install(env.driver, WEB, bundle, stranger, log)
    assert refused.value.exit_status == 2 and "key pair is not valid" in str(refused.value)
    assert _clean(str(refused.value), stranger) and _clean("\n".join(log.lines), stranger)
    assert not env.folder(WEB).exists()

    env.node.set_faults(Faults(fail_commands={"v-add-web-domain-ssl": 15}))
    with pytest.raises(TransientNodeError) as later:
        await env.installer.install(env.driver, WEB, bundle, leaf.key_pem, log)
    assert _clean(str(later.value), leaf.key_pem)
    assert not env.folder(WEB).exists()
    assert await env.installer.installed(env.driver, WEB) is None


async def test_hestias_own_lets_encrypt_is_refused_with_a_reason(env: Env) -> None:
    env.node.executor.state.users[USER].web[DOMAIN]["LETSENCRYPT"] = "yes"
    bundle, leaf = env.bundle([DOMAIN])
    before = len(env.commands())
    reason = r"Hestia's own Let's Encrypt is on for shop\.test, .*turn it off"
    with pytest.raises(PermanentNodeError, match=reason):
        await env.installer.install(env.driver, WEB, bundle, leaf.key_pem, StepLog())
    assert not [a for a in env.commands()[before:] if a[0].startswith(("v-add", "v-change"))]
    assert not env.folder(WEB).exists()


async def test_a_suspended_domain_is_left_alone(env: Env) -> None:
    await env.driver.check(["v-suspend-web-domain", USER, DOMAIN])
    bundle, leaf = env.bundle([DOMAIN])
    log = StepLog()
    done = await env.installer.install(env.driver, WEB, bundle, leaf.key_pem, log)
    assert done is InstallOutcome.SKIPPED and not done.on_node
    assert "suspended" in log.lines[-1]
    assert await env.installer.installed(env.driver, WEB) is None


async def test_two_installs_on_one_node_at_once_both_succeed_one_after_the_other(
    env: Env,
) -> None:
    """Hestia's check runs ``pkill openssl``: unfenced, the second install's check would end
    the first's (the next test shows it). The node's fence makes them take turns."""
    env.node.executor.openssl.seconds = budget(0.5)
    other = InstallTarget("web1", "web", USER, OTHER)
    (first, first_leaf), (second, second_leaf) = env.bundle([DOMAIN]), env.bundle([OTHER])
    logs = StepLog(), StepLog()
    done = await asyncio.gather(
        env.installer.install(env.driver, WEB, first, first_leaf.key_pem, logs[0]),
        env.installer.install(env.driver, other, second, second_leaf.key_pem, logs[1]),
    )
    assert list(done) == [InstallOutcome.INSTALLED] * 2
    installs = [
        e for e in read_command_log(env.node.data_dir) if e["argv"][0] == "v-add-web-domain-ssl"
    ]
    assert [e["exit_code"] for e in installs] == [0, 0]
    assert installs[0]["finished"] <= installs[1]["started"]  # never at once
    waited = [line for log in logs for line in log.lines if "waiting" in line]
    assert len(waited) == 1  # the second one waited for the fence
    assert install_fence_key("web1") == install_fence_key("web1") != install_fence_key("web2")


async def test_without_the_fence_one_of_two_installs_fails(env: Env) -> None:
    """What the fence is for: a second install reaching the node while the first one's check
    runs ends that check."""
    env.node.executor.openssl.seconds = budget(1.0)
    other = InstallTarget("web1", "web", USER, OTHER)
    (first, first_leaf), (second, second_leaf) = env.bundle([DOMAIN]), env.bundle([OTHER])
    apart = CertificateInstaller(LocalFences()), CertificateInstaller(LocalFences())
    early = asyncio.create_task(
        apart[0].install(env.driver, WEB, first, first_leaf.key_pem, StepLog())
    )
    deadline = asyncio.get_running_loop().time() + budget(10.0)
    while env.node.executor.openssl.running == 0:
        assert asyncio.get_running_loop().time() < deadline and not early.done()
        await asyncio.sleep(0.005)
    assert await apart[1].install(env.driver, other, second, second_leaf.key_pem, StepLog())
    with pytest.raises(TransientNodeError) as ended:  # the key matches: worth a retry
        await early
    assert "pkill openssl" in str(ended.value)


class PanelFirst:
    """The node's driver, but Hestia's panel turns SSL on for the domain (its own certificate)
    just before our ``v-add-web-domain-ssl`` reaches the node."""

    def __init__(self, env: Env, theirs: str) -> None:
        self._env, self._theirs = env, theirs
        self.driver = env.driver
        self.server_id = env.driver.server_id

    def __getattr__(self, name: str) -> object:
        return getattr(self.driver, name)

    async def run(self, argv: Sequence[str]) -> CommandResult:
        if argv[0] == "v-add-web-domain-ssl":
            line = shlex.join(["v-add-web-domain-ssl", USER, DOMAIN, self._theirs])
            panel = await self._env.node.executor.execute("admin", line)
            assert panel.exit_code == 0, panel.stdout
        return await self.driver.run(argv)


async def test_ssl_turned_on_meanwhile_by_someone_else_is_replaced(env: Env) -> None:
    theirs, their_leaf = env.bundle([DOMAIN])
    folder = env.node.data_dir / "fs/tmp/panel"
    folder.mkdir()
    (folder / f"{DOMAIN}.crt").write_text(theirs.certificate)
    (folder / f"{DOMAIN}.key").write_text(their_leaf.key_pem)
    (folder / f"{DOMAIN}.ca").write_text(theirs.chain)
    ours, our_leaf = env.bundle([DOMAIN])
    driver = PanelFirst(env, "/tmp/panel")
    assert await env.installer.install(driver, WEB, ours, our_leaf.key_pem, StepLog())  # type: ignore[arg-type]
    wanted = ("v-add-web-domain-ssl", "v-change-web-domain-sslcert")
    installs = [
        (e["argv"][0], e["exit_code"])
        for e in read_command_log(env.node.data_dir)
        if e["argv"][0] in wanted
    ]
    # the panel's add, ours finding SSL on (4), then ours replacing theirs
    assert installs == [(wanted[0], 0), (wanted[0], 4), (wanted[1], 0)]
    facts = await env.installer.installed(env.driver, WEB)
    assert facts is not None and facts.serial == format(_serial_of(ours), "x")


def _serial_of(bundle: PemBundle) -> int:
    return x509.load_pem_x509_certificate(bundle.certificate.encode()).serial_number
