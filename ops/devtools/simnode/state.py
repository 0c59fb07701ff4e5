"""The simulated node's data model, kept as JSON files in the node's directory.

Hestia keeps its objects as lines of ``KEY='value'`` pairs (``user.conf``, ``web.conf``,
``dns/<domain>.conf`` …); here every such object is a ``dict[str, str]`` with the same keys, so
the ``v-list-* json`` output can be produced the same way Hestia produces it. ``NodeState``
consumes and emits plain JSON (``to_json``/``from_json``); ``StateFile`` loads it from and saves it
to ``DIR/state/``: ``packages.json`` and one ``users/<user>.json`` per user, each replaced
atomically, as Hestia keeps a directory per user. ``read_state_json`` gives the whole state as
one canonical JSON text (for comparing a node before and after, byte for byte).

A command reaches the users it changes by name (``state.users[name]``, ``.get``, assignment,
``del``), and ``UserTable`` notes those names, so a save writes only their files: rewriting a
node of a few hundred zones on every command was most of a benchmark node's CPU.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

Conf = dict[str, str]

# What a fresh Hestia install ships as its "default" package (install/common/packages/default.pkg,
# as hestiacp has it at d128cc6): the simulator's own knowledge of Hestia, not hostwright's plans.
DEFAULT_PACKAGE: Conf = {
    "WEB_TEMPLATE": "default",
    "PROXY_TEMPLATE": "default",
    "BACKEND_TEMPLATE": "default",
    "DNS_TEMPLATE": "default",
    "WEB_DOMAINS": "unlimited",
    "WEB_ALIASES": "unlimited",
    "DNS_DOMAINS": "unlimited",
    "DNS_RECORDS": "unlimited",
    "MAIL_DOMAINS": "unlimited",
    "MAIL_ACCOUNTS": "unlimited",
    "RATE_LIMIT": "200",
    "DATABASES": "unlimited",
    "CRON_JOBS": "unlimited",
    "DISK_QUOTA": "unlimited",
    "CPU_QUOTA": "unlimited",
    "CPU_QUOTA_PERIOD": "unlimited",
    "MEMORY_LIMIT": "unlimited",
    "SWAP_LIMIT": "unlimited",
    "BANDWIDTH": "unlimited",
    "NS": "ns1.domain.tld,ns2.domain.tld",
    "SHELL": "nologin",
    "BACKUPS": "1",
    "BACKUPS_INCREMENTAL": "no",
    "TIME": "18:00:00",
    "DATE": "2019-01-15",
}


@dataclass
class MailDomain:
    """``mail.conf`` line, ``mail/<domain>.conf`` accounts and the DKIM key (``<domain>.pem``)."""

    conf: Conf
    accounts: dict[str, Conf] = field(default_factory=dict)
    dkim_private_pem: str = ""


@dataclass
class DnsZone:
    """``dns.conf`` line and the zone's records (``dns/<domain>.conf``), in id order."""

    conf: Conf
    records: list[Conf] = field(default_factory=list)


@dataclass
class UserData:
    """Everything under ``$HESTIA/data/users/<user>/``."""

    conf: Conf
    web: dict[str, Conf] = field(default_factory=dict)
    ssl: dict[str, Conf] = field(default_factory=dict)
    mail: dict[str, MailDomain] = field(default_factory=dict)
    dns: dict[str, DnsZone] = field(default_factory=dict)


class UserTable(dict[str, UserData]):
    """``NodeState.users``: a dict that notes every user reached by name since ``take_touched``.

    Iterating (``items``, ``values``) notes nothing: a command must not change a user it only
    came across while iterating, or the change would not be saved.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.touched: set[str] = set(self)

    def __getitem__(self, name: str) -> UserData:
        self.touched.add(name)
        return super().__getitem__(name)

    def get(self, name: str, default: UserData | None = None) -> UserData | None:  # type: ignore[override]
        self.touched.add(name)
        return super().get(name, default)

    def __setitem__(self, name: str, data: UserData) -> None:
        self.touched.add(name)
        super().__setitem__(name, data)

    def __delitem__(self, name: str) -> None:
        self.touched.add(name)
        super().__delitem__(name)

    def pop(self, name: str, *default: Any) -> Any:
        self.touched.add(name)
        return super().pop(name, *default)

    def take_touched(self) -> set[str]:
        touched, self.touched = self.touched, set()
        return touched


@dataclass
class NodeState:
    """All users and packages of one node."""

    users: UserTable = field(default_factory=UserTable)
    packages: dict[str, Conf] = field(default_factory=dict)

    @classmethod
    def fresh(cls) -> NodeState:
        """A node as Hestia's installer leaves it: the ``default`` and ``system`` packages."""
        system = dict(DEFAULT_PACKAGE, WEB_TEMPLATE="default", SHELL="bash")
        return cls(packages={"default": dict(DEFAULT_PACKAGE), "system": system})

    def to_json(self) -> dict[str, Any]:
        users = dict.items(self.users)  # the whole table: reaching users by name would note them
        return {"packages": self.packages, "users": {n: _user_json(u) for n, u in users}}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> NodeState:
        users = {
            name: UserData(
                conf=u["conf"],
                web=u.get("web", {}),
                ssl=u.get("ssl", {}),
                mail={
                    d: MailDomain(m["conf"], m.get("accounts", {}), m.get("dkim", ""))
                    for d, m in u.get("mail", {}).items()
                },
                dns={
                    d: DnsZone(z["conf"], z.get("records", [])) for d, z in u.get("dns", {}).items()
                },
            )
            for name, u in data.get("users", {}).items()
        }
        return cls(users=UserTable(users), packages=data.get("packages", {}))


def _user_json(u: UserData) -> dict[str, Any]:
    return {
        "conf": u.conf,
        "web": u.web,
        "ssl": u.ssl,
        "mail": {
            d: {"conf": m.conf, "accounts": m.accounts, "dkim": m.dkim_private_pem}
            for d, m in u.mail.items()
        },
        "dns": {d: {"conf": z.conf, "records": z.records} for d, z in u.dns.items()},
    }


def _encode(value: object) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def write_atomically(path: Path, text: str) -> None:
    """Replace ``path`` with ``text`` so that a reader or a crash never sees half a file."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


class StateFile:
    """``DIR/state/``: consumes a directory, emits the ``NodeState`` kept there."""

    def __init__(self, data_dir: Path) -> None:
        self.root = data_dir / "state"
        self.users_dir = self.root / "users"
        self._packages = ""  # as last written
        self._of: NodeState | None = None

    def load(self) -> NodeState:
        packages = self.root / "packages.json"
        if not packages.exists():
            earlier = self.root.parent / "state.json"  # one file, as simnodes kept it before
            if earlier.exists():
                return NodeState.from_json(json.loads(earlier.read_text(encoding="utf-8")))
            return NodeState.fresh()
        users = {
            path.stem: json.loads(path.read_text(encoding="utf-8"))
            for path in sorted(self.users_dir.glob("*.json"))
        }
        packages_json = json.loads(packages.read_text(encoding="utf-8"))
        return NodeState.from_json({"packages": packages_json, "users": users})

    def save(self, state: NodeState) -> None:
        """Writes the users touched since the last save of ``state``, and changed packages."""
        touched = state.users.take_touched()
        if state is not self._of:  # the first save of this state: write it all
            self._of, self._packages = state, ""
            self.users_dir.mkdir(parents=True, exist_ok=True)
            on_disk = {path.stem for path in self.users_dir.glob("*.json")}
            touched = on_disk | set(dict.keys(state.users))
        for name in touched:
            path = self.users_dir / f"{name}.json"
            if "/" in name or name.startswith("."):
                continue  # never a valid Hestia user; nothing such is ever stored
            if name in state.users:
                write_atomically(path, _encode(_user_json(dict.__getitem__(state.users, name))))
            else:
                path.unlink(missing_ok=True)
        packages = _encode(state.packages)
        if packages != self._packages:
            write_atomically(self.root / "packages.json", packages)
            self._packages = packages


def read_state_json(data_dir: Path | str) -> str:
    """The whole state of the node in ``data_dir`` as one canonical JSON text."""
    return _encode(StateFile(Path(data_dir)).load().to_json())
