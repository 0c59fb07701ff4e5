"""What a simulated node holds of its users' usage: ``DIR/usage.json``, set by tests and benches.

``{"users": {USER: {"U_DISK": 120, "U_BANDWIDTH": 40, "U_DATABASES": 2, …}},
"mailboxes": {USER: {DOMAIN: {ACCOUNT: {"U_DISK": 7}}}}}`` (MiB, as Hestia counts them).
Hestia measures disk and bandwidth with ``du`` and the web logs, which a simulated node has not:
these figures stand in for them. A key given here replaces what ``v-list-users`` and
``v-list-mail-accounts`` would print; counts of objects (domains, mailboxes) come from the
node's state unless given. Read at each listing, so a test changes it while the node runs.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

USAGE_FILE = "usage.json"


def read_usage(data_dir: Path) -> dict[str, Any]:
    """The file's content; {} when there is none (or it is not an object)."""
    try:
        found = json.loads((data_dir / USAGE_FILE).read_text())
    except (OSError, ValueError):
        return {}
    return found if isinstance(found, dict) else {}


def write_usage(data_dir: Path, usage: dict[str, Any]) -> None:
    """Replaces the file at once (written aside, then renamed)."""
    aside = data_dir / (USAGE_FILE + ".new")
    aside.write_text(json.dumps(usage))
    aside.replace(data_dir / USAGE_FILE)


def user_usage(usage: dict[str, Any], user: str) -> dict[str, str]:
    found = (usage.get("users") or {}).get(user) or {}
    return {str(k): str(v) for k, v in found.items()}


def mailbox_usage(usage: dict[str, Any], user: str, domain: str, account: str) -> dict[str, str]:
    found = (((usage.get("mailboxes") or {}).get(user) or {}).get(domain) or {}).get(account)
    return {str(k): str(v) for k, v in (found or {}).items()}
