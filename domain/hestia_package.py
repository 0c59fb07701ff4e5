"""The Hestia package a service's users are put on, named after its exact content.

Consumes a hosting plan (a Service's ``plan``: HostingPlan fields as JSON); emits the package's
full Hestia definition (``package_definition``; ``package_content`` builds it from quotas by
Hestia key, and is what handlers/package_steps.py writes to the node, so the name and the
content cannot drift) and its name (``content_package``):
``hw-<8 hex>-<plan's package>``, the digest taken over the plan's package name and every key of
the definition. A package is never rewritten once made, so one service's plan can never change
another's limits: the same content on a node is the same package, shared safely; other quotas
are another package.

Why the digest goes first: Hestia's ``v-delete-user-package P`` moves to ``default`` every user
whose package name *starts with* P (it greps ``PACKAGE='P``). With ``basic-<digest>``, deleting
an old hand-made ``basic`` would move every user of ``basic-<digest>`` too. A name starting
``hw-<digest>-`` is the prefix of no other content's name, and of no name an admin is likely to
give. ``is_content_package`` recognises the form: only such packages are ever removed.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from typing import Any

from domain.errors import InvalidInput
from domain.hosting_plan import PACKAGE_DEFAULTS, PACKAGE_KEYS, UNLIMITED

PACKAGE_MARK = "hw-"
_DIGEST_LENGTH = 8
_NAME_LIMIT = 64  # what HostingPlan allows a package name; Hestia takes up to 66
_CONTENT_PACKAGE = re.compile(r"^hw-[0-9a-f]{8}(?:-[A-Za-z0-9][A-Za-z0-9_.-]*)?$")
# Hestia *sources* a package file as shell: only plain words may go into it.
_PACKAGE_VALUE = re.compile(r"^[A-Za-z0-9._,/-]*$")


def package_definition(plan: Mapping[str, Any]) -> dict[str, str]:
    """Every key of the package the plan asks for, in Hestia's order (a limit the plan does
    not set, or sets to None, is unlimited)."""
    return package_content({key: plan.get(field) for field, key in PACKAGE_KEYS.items()})


def package_content(quotas: Mapping[str, Any]) -> dict[str, str]:
    """Every key of the package holding ``quotas`` (Hestia key -> value), in Hestia's order;
    keys left out take ``PACKAGE_DEFAULTS``. A value is an int, a word, None (unlimited), or
    for ``NS`` a list of names; anything else, or a character a package file cannot hold, is
    InvalidInput."""
    definition = dict(PACKAGE_DEFAULTS)
    for key, raw in quotas.items():
        if key not in PACKAGE_DEFAULTS:
            raise InvalidInput(f"quota {key!r} is not a Hestia package key")
        definition[key] = _package_value(key, raw)
    return definition


def _package_value(key: str, raw: Any) -> str:
    if raw is None:
        value = UNLIMITED
    elif isinstance(raw, bool):
        raise InvalidInput(f"quota {key!r} must be a number, a word or null")
    elif isinstance(raw, int | str):
        value = str(raw)
    elif isinstance(raw, list) and key == "NS":
        value = ",".join(str(item) for item in raw)
    else:
        raise InvalidInput(f"quota {key!r} must be a number, a word or null")
    if not _PACKAGE_VALUE.fullmatch(value):
        raise InvalidInput(f"quota {key!r} has characters a package file cannot hold")
    return value


def content_package(plan: Mapping[str, Any]) -> str:
    """The name of the package holding exactly the plan's limits: ``hw-<digest>-<package>``.

    The plan's package name is kept for people reading Hestia's package list, cut so the whole
    fits 64 characters and ends in a letter or digit (Hestia's rule); the digest covers the
    whole name, so two plans cut alike still get two packages.
    """
    base = str(plan.get("package", "default"))
    canonical = json.dumps(
        {"package": base, "definition": package_definition(plan)},
        sort_keys=True,
        separators=(",", ":"),
    )
    digest = hashlib.sha256(f"hestia-package/{canonical}".encode()).hexdigest()
    head = f"{PACKAGE_MARK}{digest[:_DIGEST_LENGTH]}"
    readable = base[: _NAME_LIMIT - len(head) - 1].rstrip("._-")
    return f"{head}-{readable}" if readable else head


def is_content_package(name: str) -> bool:
    """Whether ``name`` has the form ``content_package`` gives: a package hostwright made."""
    return bool(_CONTENT_PACKAGE.fullmatch(name)) and name[-1].isalnum()
