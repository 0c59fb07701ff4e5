"""HestiaDriver against a real in-process SimNode over SSH, host key pinned."""

from __future__ import annotations

import asyncio
import posixpath
import shlex
from pathlib import Path

import asyncssh
import pytest

from handlers.hestia_command import (
    CommandResult,
    PermanentNodeError,
    TransientNodeError,
    command_line,
    error_for,
    masked,
)
from handlers.hestia_driver import HestiaDriver, NodeAccess
from handlers.hestia_pool import CHANNELS_PER_CONNECTION, PREFERRED_CIPHERS
from handlers.hestia_session import IDLE_SESSIONS_KEPT
from ops.devtools.simnode import Faults, SimNode, read_command_log, read_stats
from tests.support.simnode_driver import access_for, client_key_file, node_and_driver, start_node


@pytest.fixture
async def env(tmp_path: Path):
    node, driver = await node_and_driver(tmp_path, command_timeout=5.0)
    yield node, driver
    await driver.close()
    await node.stop()


async def test_run_list_json_and_probe(env: tuple[SimNode, HestiaDriver]) -> None:
    node, driver = env
    result = await driver.run(["v-add-user", "alice", "pw-secret", "alice@example.com"])
    assert result.exit_status == 0 and result.duration_ms > 0
    users = await driver.list_json(["v-list-users"])
    assert users["alice"]["CONTACT"] == "alice@example.com"
    assert await driver.probe_json(["v-list-user", "bob"]) is None
    missing = await driver.run(["v-list-user", "bob", "json"])
    assert missing.exit_status == 3 and "doesn't exist" in missing.stdout
    assert await driver.list_json(["v-list-web-domains", "alice"]) == {}
    log = read_command_log(node.data_dir)
    assert log[0]["argv"] == ["v-add-user", "alice", "*****", "alice@example.com"]
    assert log[1]["argv"] == ["v-list-users", "json"]


async def test_command_line_is_quoted_and_checked() -> None:
    argv = ["v-add-dns-record", "u", "z.test", "@", "TXT", "a b; $(x) 'q' \"d\""]
    line = command_line(argv)
    assert line.startswith("sudo /usr/local/hestia/bin/v-add-dns-record u z.test @ TXT ")
    assert shlex.split(line) == ["sudo", "/usr/local/hestia/bin/v-add-dns-record", *argv[1:]]
    for bad in (["rm", "-rf", "/"], ["v-list-users;", "x"], ["/usr/local/hestia/bin/v-x"], []):
        with pytest.raises(ValueError):
            command_line(bad)
    with pytest.raises(ValueError):
        command_line(["v-list-user", 5])  # type: ignore[list-item]
    with pytest.raises(ValueError):
        command_line(["v-list-user", "a\x00b"])


async def test_pinned_host_key_mismatch_is_refused(tmp_path: Path) -> None:
    node = await start_node(tmp_path)
    key_path, public = client_key_file(tmp_path / "keys")
    node.authorize(public)
    impostor = asyncssh.generate_private_key("ssh-ed25519").export_public_key().decode()
    access = access_for(node, key_path)
    wrong = NodeAccess(
        access.server_id, access.host, access.port, access.username, impostor, access.client_keys
    )
    driver = HestiaDriver(wrong)
    try:
        with pytest.raises(PermanentNodeError, match="host key does not match"):
            await driver.run(["v-list-users", "json"])
        assert read_command_log(node.data_dir) == []
    finally:
        await driver.close()
        await node.stop()
    with pytest.raises(ValueError):
        NodeAccess("web1", "127.0.0.1", 22, "hw", "", ())
    with pytest.raises(ValueError):
        NodeAccess("web1", "127.0.0.1", 22, "hw", "not a key", ())


async def test_unknown_client_key_is_permanent(tmp_path: Path) -> None:
    node = await start_node(tmp_path)
    key_path, _ = client_key_file(tmp_path / "keys")  # never authorized
    driver = HestiaDriver(access_for(node, key_path))
    try:
        with pytest.raises(PermanentNodeError, match="refused our SSH key"):
            await driver.run(["v-list-users", "json"])
    finally:
        await driver.close()
        await node.stop()


async def test_exit_classification(env: tuple[SimNode, HestiaDriver]) -> None:
    node, driver = env
    for code, kind in (
        (15, TransientNodeError),
        (14, TransientNodeError),
        (20, TransientNodeError),
    ):
        node.set_faults(Faults(fail_next=1, fail_code=code))
        with pytest.raises(kind) as caught:
            await driver.list_json(["v-list-users"])
        assert caught.value.exit_status == code
    for code in (1, 2, 8, 9, 10, 11, 12):
        node.set_faults(Faults(fail_next=1, fail_code=code))
        with pytest.raises(PermanentNodeError) as failed:
            await driver.list_json(["v-list-users"])
        assert failed.value.exit_status == code
    assert "web1: v-list-users json exited 12 (parsing)" in str(failed.value)
    node.set_faults(Faults())
    assert await driver.list_json(["v-list-users"]) == {}


async def test_refused_and_hanging_node_are_transient(tmp_path: Path) -> None:
    node, driver = await node_and_driver(tmp_path, command_timeout=0.3, connect_timeout=2.0)
    try:
        node.set_faults(Faults(refuse=True))
        await node.apply_faults()
        with pytest.raises(TransientNodeError, match="cannot connect"):
            await driver.run(["v-list-users", "json"])
        node.set_faults(Faults())
        await node.apply_faults()
        assert (await driver.run(["v-list-users", "json"])).exit_status == 0
        node.set_faults(Faults(hang=True))
        with pytest.raises(TransientNodeError, match=r"no answer within 0\.3s"):
            await driver.run(["v-list-users", "json"])
        assert sum(slot.busy for slot in driver._pool.slots) == 0  # abandoned: counts no more
        node.set_faults(Faults())
        assert (await driver.run(["v-list-users", "json"])).exit_status == 0
        assert sum(slot.busy for slot in driver._pool.slots) == 0
    finally:
        await driver.close()
        await node.stop()


async def test_pool_reuses_connections(env: tuple[SimNode, HestiaDriver]) -> None:
    node, driver = env
    for _ in range(20):
        assert (await driver.run(["v-list-users", "json"])).exit_status == 0
    assert driver.connections_opened == 1
    node.set_faults(Faults(latency_ms=200))
    results = await asyncio.gather(*(driver.run(["v-list-users", "json"]) for _ in range(12)))
    assert all(r.exit_status == 0 for r in results)
    assert driver.connections_opened <= 4
    assert read_stats(node.data_dir)["peak_running"] == 12


async def test_reconnects_after_the_node_restarts(tmp_path: Path) -> None:
    node, driver = await node_and_driver(tmp_path)
    try:
        assert (await driver.run(["v-list-users", "json"])).exit_status == 0
        port = node.port
        await node.stop()
        node = await start_node(tmp_path, port=port)
        assert (await driver.run(["v-list-users", "json"])).exit_status == 0
        assert driver.connections_opened == 2
    finally:
        await driver.close()
        await node.stop()


async def test_files_over_sftp(env: tuple[SimNode, HestiaDriver]) -> None:
    node, driver = env
    await driver.put_file("/tmp/hw-test.txt", b"hello\n")
    stored = node.data_dir / "fs/tmp/hw-test.txt"
    assert stored.read_bytes() == b"hello\n"
    assert stored.stat().st_mode & 0o777 == 0o600
    await driver.remove_file("/tmp/hw-test.txt")
    await driver.remove_file("/tmp/hw-test.txt")
    assert not stored.exists()


async def test_a_file_another_user_must_read_gets_the_mode_asked_for(
    env: tuple[SimNode, HestiaDriver],
) -> None:
    node, driver = env
    await driver.put_file("/tmp/hw-token", b"t.k\n", mode=0o644)
    assert (node.data_dir / "fs/tmp/hw-token").stat().st_mode & 0o777 == 0o644


async def test_private_files_go_into_a_fresh_0700_folder_and_leave_with_it(
    env: tuple[SimNode, HestiaDriver],
) -> None:
    node, driver = env
    fs = node.data_dir / "fs"  # the login's home is the SFTP root here
    (fs / "hw-ssl/abc").mkdir(parents=True, mode=0o700)
    (fs / "hw-ssl").chmod(0o700)
    (fs / "hw-ssl/abc/stale.key").write_text("a killed attempt's leftover")
    files = {"shop.test.crt": b"CRT", "shop.test.key": b"KEY", "shop.test.ca": b"CA"}
    assert await driver.put_private_files("hw-ssl/abc", files) == "/hw-ssl/abc"
    folder = fs / "hw-ssl/abc"
    assert folder.stat().st_mode & 0o777 == 0o700
    assert sorted(p.name for p in folder.iterdir()) == sorted(files)
    for name, data in files.items():
        assert (folder / name).read_bytes() == data
        assert (folder / name).stat().st_mode & 0o777 == 0o600
    await driver.remove_tree("hw-ssl/abc")
    await driver.remove_tree("/hw-ssl/abc")  # gone already: fine
    assert not folder.exists() and (fs / "hw-ssl").is_dir()

    # a symbolic link planted at the folder's name is replaced, never followed
    (fs / "elsewhere").mkdir()
    (fs / "elsewhere/keep").write_text("keep")
    folder.symlink_to(fs / "elsewhere")
    await driver.put_private_files("hw-ssl/abc", {"x.key": b"K"})
    assert not folder.is_symlink() and (folder / "x.key").read_bytes() == b"K"
    assert (fs / "elsewhere/keep").read_text() == "keep"
    await driver.remove_tree("hw-ssl/abc")

    # missing parents are made ours and 0700
    await driver.put_private_files("a/b/c", {"x.key": b"K"})
    assert all((fs / p).stat().st_mode & 0o777 == 0o700 for p in ("a", "a/b", "a/b/c"))

    for directory, names in (
        ("/tmp/x", {"a": b""}),
        (".", {"a": b""}),
        ("../up", {"a": b""}),
        ("x", {"../a": b""}),
    ):
        with pytest.raises(ValueError):
            await driver.put_private_files(directory, names)
    with pytest.raises(ValueError):
        await driver.remove_tree("/")


async def test_a_private_folder_under_a_parent_not_ours_alone_is_refused(
    env: tuple[SimNode, HestiaDriver],
) -> None:
    node, driver = env
    fs = node.data_dir / "fs"
    (fs / "open").mkdir(mode=0o777)
    (fs / "open").chmod(0o777)  # anyone may swap what is in it
    (fs / "target").mkdir()
    (fs / "linked").symlink_to(fs / "target")  # a parent that is a link
    for directory in ("open/abc", "linked/abc"):
        with pytest.raises(PermanentNodeError):
            await driver.put_private_files(directory, {"shop.test.key": b"KEY"})
    assert not (fs / "open/abc").exists() and not any((fs / "target").iterdir())


async def test_a_fresh_file_gets_a_folder_of_its_own_under_a_safe_root(
    env: tuple[SimNode, HestiaDriver],
) -> None:
    node, driver = env
    fs = node.data_dir / "fs"
    path = await driver.put_fresh_file("/tmp/hw-up", "tok", b"body", mode=0o644)
    assert path.startswith("/tmp/hw-up/") and path.endswith("/tok")
    stored = fs / path.lstrip("/")
    assert stored.read_bytes() == b"body" and stored.stat().st_mode & 0o777 == 0o644
    again = await driver.put_fresh_file("/tmp/hw-up", "tok", b"body", mode=0o644)
    assert posixpath.dirname(again) != posixpath.dirname(path)

    (fs / "tmp/planted").mkdir()
    (fs / "tmp/planted").chmod(0o777)
    (fs / "tmp/elsewhere").mkdir()
    (fs / "tmp/linked").symlink_to(fs / "tmp/elsewhere")
    for root in ("/tmp/planted", "/tmp/linked"):
        with pytest.raises(PermanentNodeError):
            await driver.put_fresh_file(root, "tok", b"body", mode=0o644)
    assert not any((fs / "tmp/planted").iterdir()) and not any((fs / "tmp/elsewhere").iterdir())


def test_errors_never_carry_passwords() -> None:
    argv = ["v-add-mail-account", "u", "d.test", "info", "Sup3r$ecret"]
    said = CommandResult(2, "Error: invalid password format :: Sup3r$ecret\n", "", 1.0)
    error = error_for("mail1", argv, said)
    assert isinstance(error, PermanentNodeError)
    assert "Sup3r$ecret" not in str(error)
    assert "v-add-mail-account u d.test info '*****'" in str(error)
    assert masked(["v-add-user", "a", "pw", "e@x.test"]) == ["v-add-user", "a", "*****", "e@x.test"]


async def test_commands_share_a_kept_session(env: tuple[SimNode, HestiaDriver]) -> None:
    node, driver = env
    for _ in range(10):
        assert (await driver.run(["v-list-users", "json"])).exit_status == 0
    assert (driver.connections_opened, driver.sessions_opened) == (1, 1)
    await asyncio.gather(*(driver.run(["v-list-users", "json"]) for _ in range(3)))
    assert driver.sessions_opened == 3
    assert len(read_command_log(node.data_dir)) == 13


async def test_a_session_answers_as_an_exec_channel_does(tmp_path: Path) -> None:
    node, sessions = await node_and_driver(tmp_path)
    key_path = sessions.access.client_keys[0]
    execs = HestiaDriver(access_for(node, key_path), use_sessions=False)
    tricky = "a b; $(x) 'q' \"d\" hw-end-0 0"
    commands = [
        ["v-add-user", "alice", "pw-secret", "alice@example.com"],
        ["v-add-dns-domain", "alice", "alice.test", "192.0.2.1"],
        ["v-add-dns-record", "alice", "alice.test", "@", "TXT", tricky],
        ["v-list-dns-records", "alice", "alice.test", "json"],
        ["v-list-user", "bob", "json"],  # exit 3 with its message on stdout
        ["v-list-user"],  # usage line
        ["v-no-such-command"],  # 127 and stderr
    ]
    try:
        for argv in commands:
            if argv[0].startswith("v-add"):
                assert (await sessions.run(argv)).exit_status == 0
                continue
            by_session, by_exec = await sessions.run(argv), await execs.run(argv)
            assert (by_session.exit_status, by_session.stdout, by_session.stderr) == (
                by_exec.exit_status,
                by_exec.stdout,
                by_exec.stderr,
            ), argv
        records = await sessions.list_json(["v-list-dns-records", "alice", "alice.test"])
        assert any("hw-end-0 0" in entry["VALUE"] for entry in records.values())
        assert execs.sessions_opened == 0 and sessions.sessions_opened == 1
    finally:
        await execs.close()
        await sessions.close()
        await node.stop()


async def test_an_argument_with_a_line_break_goes_over_an_exec_channel(
    env: tuple[SimNode, HestiaDriver],
) -> None:
    node, driver = env
    result = await driver.run(["v-list-user", "a\nb", "json"])
    assert result.exit_status != 0
    assert read_command_log(node.data_dir)[-1]["argv"] == ["v-list-user", "a\nb", "json"]
    assert driver.sessions_opened == 0


async def test_the_session_protocol_runs_in_real_bash(tmp_path: Path) -> None:
    """The driver against an SSH server whose shell is a real ``bash``, with a stand-in
    ``sudo`` on its PATH: the preamble, the markers, stdout/stderr and exit codes as bash
    itself gives them, and the commands never read the session's own input."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    sudo = bin_dir / "sudo"
    sudo.write_text(
        "#!/bin/sh\n"
        'case "${1##*/}" in\n'
        "  v-out) printf 'no newline' ;;\n"
        "  v-err) echo 'Error: it broke'; echo 'on stderr' >&2; exit 4 ;;\n"
        "  v-stdin) cat ;;\n"
        "  v-big) yes x | tr -d '\\n' | head -c 3000000; head -c 300000 /dev/zero >&2 ;;\n"
        '  *) echo "$@" ;;\nesac\n'
    )
    sudo.chmod(0o755)
    host_key = asyncssh.generate_private_key("ssh-ed25519")
    key_path, public = client_key_file(tmp_path / "keys")

    async def shell(process: asyncssh.SSHServerProcess[bytes]) -> None:
        assert process.command == "bash --noprofile --norc"
        bash = await asyncio.create_subprocess_exec(
            "bash",
            "--noprofile",
            "--norc",
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env={"PATH": f"{bin_dir}:/usr/bin:/bin"},
        )
        assert bash.stdin and bash.stdout and bash.stderr

        async def feed() -> None:
            while line := await process.stdin.readline():
                bash.stdin.write(line)  # type: ignore[union-attr]
            bash.stdin.close()  # type: ignore[union-attr]

        async def copy(source: asyncio.StreamReader, target: asyncssh.SSHWriter[bytes]) -> None:
            while chunk := await source.read(4096):
                target.write(chunk)

        try:
            await asyncio.gather(
                feed(), copy(bash.stdout, process.stdout), copy(bash.stderr, process.stderr)
            )
            process.exit(await bash.wait())
        finally:
            # a session cut at the test's end leaves no bash behind, nor its pipes for the
            # garbage collector to report during a later test
            if bash.returncode is None:
                bash.kill()
                await bash.wait()

    server = await asyncssh.listen(
        "127.0.0.1",
        0,
        server_host_keys=[host_key],
        authorized_client_keys=asyncssh.import_authorized_keys(public),
        process_factory=shell,
        encoding=None,
    )
    access = NodeAccess(
        "bash1",
        "127.0.0.1",
        server.get_port(),
        "hostwright",
        host_key.export_public_key().decode(),
        (key_path,),
    )
    driver = HestiaDriver(access, command_timeout=5.0)
    try:
        out = await driver.run(["v-out"])
        assert (out.exit_status, out.stdout, out.stderr) == (0, "no newline", "")
        err = await driver.run(["v-err"])
        assert (err.exit_status, err.stdout, err.stderr) == (4, "Error: it broke\n", "on stderr\n")
        echo = await driver.run(["v-echo", "a b", "$(x)", "'q'"])
        assert echo.stdout == "/usr/local/hestia/bin/v-echo a b $(x) 'q'\n"
        assert (await driver.run(["v-stdin"])).stdout == ""
        # more than an SSH window (2 MiB) on stdout, and some on stderr
        big = await driver.run(["v-big"])
        assert (len(big.stdout), set(big.stdout)) == (3_000_000, {"x"})
        assert big.stderr == "\0" * 300_000
        assert (await driver.run(["v-out"])).stdout == "no newline"
        assert driver.sessions_opened == 1
    finally:
        await driver.close()
        server.close()


async def test_the_connection_prefers_aes_gcm_and_offers_nothing_weaker_than_the_defaults(
    env: tuple[SimNode, HestiaDriver],
) -> None:
    _, driver = env
    assert (await driver.run(["v-list-users", "json"])).exit_status == 0
    (slot,) = driver._pool.slots
    assert slot.conn.get_extra_info("send_cipher") == "aes128-gcm@openssh.com"
    defaults = {a.decode() for a in asyncssh.encryption.get_default_encryption_algs()}
    assert set(PREFERRED_CIPHERS) == defaults


async def test_at_most_so_many_idle_sessions_are_kept(env: tuple[SimNode, HestiaDriver]) -> None:
    node, driver = env
    node.set_faults(Faults(latency_ms=100))
    burst = IDLE_SESSIONS_KEPT + 4
    results = await asyncio.gather(*(driver.run(["v-list-users", "json"]) for _ in range(burst)))
    assert all(r.exit_status == 0 for r in results)
    assert driver.sessions_opened == burst  # all at once: one session each
    assert len(driver._sessions.idle) == IDLE_SESSIONS_KEPT  # the rest closed when they finished


async def test_a_connection_never_holds_more_channels_than_openssh_allows(tmp_path: Path) -> None:
    """OpenSSH refuses an 11th channel on a connection: kept sessions and SFTP channels
    together stay at CHANNELS_PER_CONNECTION as the node counts them, an idle session giving
    way when needed."""
    node, driver = await node_and_driver(tmp_path, command_timeout=10.0)
    driver._pool.size = 1
    peak = 0

    async def watch() -> None:
        nonlocal peak
        while True:
            for conn in node.ssh.connections:  # as the node counts them
                peak = max(peak, len(conn._channels))
            await asyncio.sleep(0.002)

    watcher = asyncio.create_task(watch())
    try:
        node.set_faults(Faults(latency_ms=150))
        commands = [driver.run(["v-list-users", "json"]) for _ in range(12)]
        uploads = [driver.put_file(f"/tmp/hw-{i}.txt", b"x") for i in range(4)]
        results = await asyncio.gather(*commands, *uploads)
        assert all(r.exit_status == 0 for r in results[:12])  # type: ignore[union-attr]
        assert all((node.data_dir / f"fs/tmp/hw-{i}.txt").exists() for i in range(4))
        node.set_faults(Faults())
        await asyncio.gather(*(driver.put_file(f"/tmp/hw-{i}.txt", b"y") for i in range(3)))
        assert 0 < peak <= CHANNELS_PER_CONNECTION
    finally:
        watcher.cancel()
        await driver.close()
        await node.stop()
