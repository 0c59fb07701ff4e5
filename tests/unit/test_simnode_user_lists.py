"""The simulated ``v-list-user USER json`` and ``v-list-users json`` print each its own list
of fields, as Hestia's bin/v-list-user and bin/v-list-users do: the one user's answer has its
home, two-factor, theme and login settings; the list of all users has the resource limits."""

from __future__ import annotations

import json
from pathlib import Path

from ops.devtools.simnode.commands import Node, run_command
from ops.devtools.simnode.state import NodeState


def test_v_list_user_and_v_list_users_print_their_own_fields(tmp_path: Path) -> None:
    node = Node(NodeState.fresh(), frozenset({"web"}), "192.0.2.10", tmp_path / "fs")
    added = run_command(node, ["v-add-user", "alice", "pw", "alice@example.com", "default"])
    assert added.exit_code == 0, added.stderr
    one = run_command(node, ["v-list-user", "alice", "json"])
    every = run_command(node, ["v-list-users", "json"])
    assert one.exit_code == 0 and every.exit_code == 0
    user = list(json.loads(one.stdout)["alice"])
    users = list(json.loads(every.stdout)["alice"])
    for field in ("HOME", "TWOFA", "QRCODE", "BACKUPS_INCREMENTAL", "THEME", "PHPCLI"):
        assert field in user and field not in users, field
    for field in ("CPU_QUOTA", "CPU_QUOTA_PERIOD", "MEMORY_LIMIT", "SWAP_LIMIT"):
        assert field in users and field not in user, field
    assert json.loads(one.stdout)["alice"]["HOME"] == "/home/alice"
    assert user[:3] == users[:3] == ["NAME", "PACKAGE", "WEB_TEMPLATE"]
    assert user[-2:] == users[-2:] == ["TIME", "DATE"]
    assert {"U_DISK", "U_BANDWIDTH"} <= set(user) & set(users)
