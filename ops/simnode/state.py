"""The simulated node's data model, kept as one JSON file in the node's directory.

Hestia keeps its objects as lines of ``KEY='value'`` pairs (``user.conf``, ``web.conf``,
``dns/<domain>.conf`` …); here every such object is a ``dict[str, str]`` with the same keys, so
the ``v-list-* json`` output can be produced the same way Hestia produces it. ``NodeState``
consumes and emits plain JSON (``to_json``/``from_json``); ``StateFile`` loads it from and saves it
atomically to ``DIR/state.json``.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

Conf = dict[str, str]

# The packages every fresh Hestia install ships (install/common/packages/*.pkg).
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


@dataclass
class NodeState:
    """All users and packages of one node."""

    users: dict[str, UserData] = field(default_factory=dict)
    packages: dict[str, Conf] = field(default_factory=dict)

    @classmethod
    def fresh(cls) -> NodeState:
        """A node as Hestia's installer leaves it: the ``default`` and ``system`` packages."""
        system = dict(DEFAULT_PACKAGE, WEB_TEMPLATE="default", SHELL="bash")
        return cls(packages={"default": dict(DEFAULT_PACKAGE), "system": system})

    def to_json(self) -> dict[str, Any]:
        return {
            "packages": self.packages,
            "users": {
                name: {
                    "conf": u.conf,
                    "web": u.web,
                    "ssl": u.ssl,
                    "mail": {
                        d: {"conf": m.conf, "accounts": m.accounts, "dkim": m.dkim_private_pem}
                        for d, m in u.mail.items()
                    },
                    "dns": {d: {"conf": z.conf, "records": z.records} for d, z in u.dns.items()},
                }
                for name, u in self.users.items()
            },
        }

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
        return cls(users=users, packages=data.get("packages", {}))


def write_atomically(path: Path, text: str) -> None:
    """Replace ``path`` with ``text`` so that a reader or a crash never sees half a file."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


class StateFile:
    """``DIR/state.json``: consumes a directory, emits the ``NodeState`` kept there."""

    def __init__(self, data_dir: Path) -> None:
        self.path = data_dir / "state.json"

    def load(self) -> NodeState:
        if not self.path.exists():
            return NodeState.fresh()
        return NodeState.from_json(json.loads(self.path.read_text(encoding="utf-8")))

    def save(self, state: NodeState) -> None:
        # Compact: with ``indent`` json falls back to its pure-Python encoder, which made
        # saving a node of a few hundred zones the slowest thing in a benchmark run.
        text = json.dumps(state.to_json(), sort_keys=True, separators=(",", ":"))
        write_atomically(self.path, text)
