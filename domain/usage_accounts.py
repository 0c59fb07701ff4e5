"""Which Hestia users a service's figures are the sum of: one rule for the desk and the view.

``service_accounts`` consumes a service's mode, its Hestia user and its placement, and emits
the (role, server, user) accounts its usage is counted from:

- split: its web user on the web node, its mail user on the mail node and its DNS user on the
  first DNS node (the other DNS nodes hold copies of the same zone: counting each would bill
  one zone several times);
- unified: its one user on its one node (the three roles are the same account, counted once);
- vanity: its own web user only; its mailbox lives on the provider's shared mail user and is
  counted from that user's mailbox listing (``vanity_mailbox``), never the shared user's totals.
"""

from __future__ import annotations

from typing import Any, NamedTuple


class Account(NamedTuple):
    role: str
    server_id: str
    user: str


def service_accounts(mode: str, user: str, placement: dict[str, Any] | None) -> list[Account]:
    """The accounts (module docstring), each (server, user) once; [] before placement."""
    if not placement:
        return []
    web = placement.get("web_server")
    if mode == "vanity":
        return [Account("web", str(web), user)] if web else []
    dns = list(placement.get("dns_servers") or [])
    wanted = [
        ("web", web),
        ("mail", placement.get("mail_server")),
        ("dns", dns[0] if dns else None),
    ]
    found: list[Account] = []
    seen: set[tuple[str, str]] = set()
    for role, server in wanted:
        if server and (str(server), user) not in seen:
            seen.add((str(server), user))
            found.append(Account(role, str(server), user))
    return found


def vanity_mailbox(domain: str, label: str | None) -> tuple[str, str] | None:
    """A vanity service's mailbox as (mail domain, account): ``<label>@<provider domain>``,
    its domain being ``<label>.<provider domain>``; None when it is not of that shape."""
    if not label or not domain.startswith(label + "."):
        return None
    return domain[len(label) + 1 :], label
