"""Which registered nodes a service is built on.

Rule (deterministic; same inputs, same answer, on any machine):

- web and mail: among the servers with that role, the least loaded one when ``load`` (services
  already placed per server_id) is given, ties — and every choice when it is not — broken by
  rendezvous hashing: the highest ``sha256("<service_id>/<role>/<server_id>")`` wins. Rendezvous
  hashing moves only the services of a node that is added or removed, never the others.
- unified: the same rule over the servers that have all three roles; web, mail and the single
  DNS server are that one node.
- dns_servers (split, vanity): every server with the dns role, sorted by id — zones and records
  go to each node of the active-active cluster.

The answer depends on the server list, so the pipeline should record a service's placement
when it first deploys and reuse it, rather than recompute it after nodes come and go.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from domain.commands import MODES
from domain.errors import Conflict, InvalidInput
from domain.server import ROLES, ServerFacts


@dataclass(frozen=True)
class Placement:
    """The nodes of one service: web and mail server ids, and every DNS server id."""

    web_server: str
    mail_server: str
    dns_servers: tuple[str, ...]

    def to_json(self) -> dict[str, object]:
        return {
            "web_server": self.web_server,
            "mail_server": self.mail_server,
            "dns_servers": list(self.dns_servers),
        }


def placement_for(
    service_id: str,
    mode: str,
    servers: Sequence[ServerFacts],
    *,
    load: Mapping[str, int] | None = None,
) -> Placement:
    """Chooses the nodes for a service (rule in the module docstring); Conflict when no
    registered server has a role the mode needs."""
    if mode not in MODES:
        raise InvalidInput(f"mode must be one of {', '.join(MODES)}")
    ids = [server.server_id for server in servers]
    if len(set(ids)) != len(ids):
        raise InvalidInput("the server list names a server twice")
    if mode == "unified":
        full = [s for s in servers if set(ROLES) <= set(s.roles)]
        if not full:
            raise Conflict(
                "no registered server has all of the web, mail and dns roles; "
                "a unified service needs one"
            )
        node = _choose(service_id, "unified", full, load)
        return Placement(web_server=node, mail_server=node, dns_servers=(node,))
    dns = sorted(s.server_id for s in servers if "dns" in s.roles)
    if not dns:
        raise Conflict(f"no registered server has the dns role; a {mode} service needs one")
    return Placement(
        web_server=_choose(service_id, "web", _with_role(servers, "web", mode), load),
        mail_server=_choose(service_id, "mail", _with_role(servers, "mail", mode), load),
        dns_servers=tuple(dns),
    )


def _with_role(servers: Sequence[ServerFacts], role: str, mode: str) -> list[ServerFacts]:
    found = [s for s in servers if role in s.roles]
    if not found:
        raise Conflict(f"no registered server has the {role} role; a {mode} service needs one")
    return found


def _choose(
    service_id: str, role: str, candidates: list[ServerFacts], load: Mapping[str, int] | None
) -> str:
    def rank(server: ServerFacts) -> tuple[int, int, str]:
        count = (load or {}).get(server.server_id, 0)
        return (count, -_score(service_id, role, server.server_id), server.server_id)

    return min(candidates, key=rank).server_id


def _score(service_id: str, role: str, server_id: str) -> int:
    digest = hashlib.sha256(f"{service_id}/{role}/{server_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big")
