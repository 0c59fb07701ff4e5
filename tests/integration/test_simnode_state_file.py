"""The simulated node's own bookkeeping, which must stay cheap and exact: its state is saved
incrementally (only the files of the users a command touched are rewritten) and must still
read back as exactly the whole state after every kind of changing command; the journal's log
and stats keep up with the commands; DKIM keys made ahead are used once; and a command
session's line splits as shlex would split it."""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ops.devtools.simnode.dkim_keys import dkim_private_key, make_dkim_keys_ahead
from ops.devtools.simnode.executor import CommandExecutor
from ops.devtools.simnode.journal import read_command_log, read_stats
from ops.devtools.simnode.shell_words import split_words
from ops.devtools.simnode.state import (
    DEFAULT_PACKAGE,
    NodeState,
    StateFile,
    UserData,
    read_state_json,
)

PASSWORD = "s3cret-Pass"

# Every changing command the node knows, on two users, so a change to one user that the
# incremental save missed shows as a difference from the whole encoding.
SCRIPT = [
    "v-add-user-package /tmp/gold.pkg gold",
    f"v-add-user alice {PASSWORD} alice@example.org",
    f"v-add-user bob {PASSWORD} bob@example.org",
    "v-change-user-package alice gold",
    f"v-change-user-password alice {PASSWORD}x",
    "v-add-web-domain alice alice.example 10.0.0.1",
    "v-add-web-domain bob bob.example 10.0.0.1",
    "v-change-web-domain-backend-tpl alice alice.example PHP-8_2",
    "v-change-web-domain-proxy-tpl alice alice.example default",
    "v-add-dns-domain alice alice.example 10.0.0.1",
    "v-add-dns-domain bob bob.example 10.0.0.1",
    "v-add-dns-record alice alice.example www A 10.0.0.2",
    "v-delete-dns-record alice alice.example 1",
    "v-suspend-dns-record alice alice.example 2",
    "v-unsuspend-dns-record alice alice.example 2",
    "v-add-mail-domain alice alice.example yes yes no",
    "v-add-mail-domain-dkim alice alice.example",
    f"v-add-mail-account alice alice.example info {PASSWORD}",
    "v-change-mail-account-quota alice alice.example info 100",
    "v-suspend-mail-account alice alice.example info",
    "v-unsuspend-mail-account alice alice.example info",
    "v-suspend-mail-domain alice alice.example",
    "v-unsuspend-mail-domain alice alice.example",
    "v-suspend-web-domain alice alice.example",
    "v-unsuspend-web-domain alice alice.example",
    "v-suspend-dns-domain alice alice.example",
    "v-unsuspend-dns-domain alice alice.example",
    "v-suspend-user bob",
    "v-unsuspend-user bob",
    "v-delete-mail-account alice alice.example info",
    "v-delete-mail-domain alice alice.example",
    "v-delete-web-domain alice alice.example",
    "v-delete-dns-domain alice alice.example",
    "v-delete-user bob",
]


def _whole(executor: CommandExecutor) -> str:
    return json.dumps(executor.state.to_json(), sort_keys=True, separators=(",", ":"))


def _package_file(root: Path) -> None:
    (root / "fs" / "tmp").mkdir(parents=True)
    conf = {**DEFAULT_PACKAGE, "WEB_DOMAINS": "5"}
    lines = [f"{key}='{value}'" for key, value in conf.items()]
    (root / "fs" / "tmp" / "gold.pkg").write_text("\n".join(lines) + "\n")


async def test_every_changing_command_leaves_the_file_equal_to_the_whole_state(
    tmp_path: Path,
) -> None:
    _package_file(tmp_path)
    executor = CommandExecutor(tmp_path, frozenset({"web", "mail", "dns"}), "10.0.0.1")
    changed = 0
    for line in SCRIPT:
        result = await executor.execute("admin", line)
        assert result.exit_code == 0, (line, result.stdout)
        if result.changed:
            changed += 1
            assert read_state_json(tmp_path) == _whole(executor), line
    assert changed == len(SCRIPT)
    # What was saved loads back into the same state.
    reloaded = StateFile(tmp_path).load()
    assert reloaded.to_json() == executor.state.to_json()
    assert len(read_command_log(tmp_path)) == len(SCRIPT)


async def test_a_reloaded_node_saves_all_its_users_the_first_time(tmp_path: Path) -> None:
    first = CommandExecutor(tmp_path, frozenset({"web", "dns"}), "10.0.0.1")
    for user in ("alice", "bob"):
        line = f"v-add-user {user} {PASSWORD} {user}@example.org"
        assert (await first.execute("admin", line)).exit_code == 0
    second = CommandExecutor(tmp_path, frozenset({"web", "dns"}), "10.0.0.1")
    assert (await second.execute("admin", "v-suspend-user bob")).changed
    saved = json.loads(read_state_json(tmp_path))
    assert sorted(saved["users"]) == ["alice", "bob"]
    assert saved["users"]["bob"]["conf"]["SUSPENDED"] == "yes"
    assert read_state_json(tmp_path) == _whole(second)
    assert sorted(p.name for p in (tmp_path / "state" / "users").iterdir()) == [
        "alice.json",
        "bob.json",
    ]
    assert (await second.execute("admin", "v-delete-user alice")).changed
    assert [p.name for p in (tmp_path / "state" / "users").iterdir()] == ["bob.json"]


async def test_stats_are_written_soon_after_a_command_ends(tmp_path: Path) -> None:
    executor = CommandExecutor(tmp_path, frozenset({"web"}), "10.0.0.1")
    for _ in range(5):
        await executor.execute("admin", "v-list-users json")
    executor.journal.flush()
    stats = read_stats(tmp_path)
    assert stats == {"running": 0, "peak_running": 1, "commands": 5}


def test_keys_made_ahead_are_used_once_each() -> None:
    make_dkim_keys_ahead(1024, 2)
    keys = {dkim_private_key(1024) for _ in range(3)}  # the third is made on demand
    assert len(keys) == 3
    assert all(key.startswith("-----BEGIN RSA PRIVATE KEY-----") for key in keys)


@given(st.lists(st.text(max_size=12), max_size=6))
def test_the_session_line_splitter_agrees_with_shlex(words: list[str]) -> None:
    line = shlex.join(["hw_run", "m", *words])
    assert split_words(line) == shlex.split(line) == ["hw_run", "m", *words]


def test_the_session_line_splitter_leaves_other_quoting_to_shlex() -> None:
    for line in ('a "b c" d', "a\\ b", "a 'b' \"c\"", "x'y'z 'q'"):
        assert split_words(line) == shlex.split(line)
    with pytest.raises(ValueError):
        split_words("a 'b")


async def test_a_node_kept_in_one_state_json_comes_back_with_its_users(tmp_path: Path) -> None:
    state = NodeState.fresh()
    state.users["alice"] = UserData(conf={"CONTACT": "a@example.org", "SUSPENDED": "no"})
    (tmp_path / "state.json").write_text(json.dumps(state.to_json()))
    executor = CommandExecutor(tmp_path, frozenset({"web"}), "10.0.0.1")
    assert (await executor.execute("admin", "v-suspend-user alice")).changed
    saved = json.loads(read_state_json(tmp_path))
    assert saved["users"]["alice"]["conf"]["SUSPENDED"] == "yes"
    assert sorted(saved["packages"]) == ["default", "system"]
