"""Hestia's file-manager commands: ``v-add-fs-directory``, ``v-copy-fs-file``, ``v-delete-fs-file``.

Each takes the Hestia user first, then paths on the host, and works as that user. A path must
resolve (``readlink -f``: every component but the last must exist) to somewhere starting with
``/tmp`` or the user's home ``/home/<user>`` — a plain prefix test, as Hestia's ``egrep`` is —
or the command exits 2 before it touches anything. So ``v-add-fs-directory`` makes one level
at a time under a folder that exists, and the webmail root (``/var/lib/roundcube``) is out of
reach. The copy runs as the user: a file in ``/tmp`` that only our login may read (mode 0600)
is not copied (exit 3). They report a change (the command log's ``changed``) when a file or
folder appeared or went.
"""

from __future__ import annotations

import os
import posixpath
import shutil
from pathlib import Path

from ops.devtools.simnode import validation as v
from ops.devtools.simnode.commands import Node, command, user_valid
from ops.devtools.simnode.validation import Exit, HestiaError, check_args


def _user(node: Node, argv: list[str], needed: int, name: str, usage: str) -> str:
    check_args(argv, needed, name, usage)
    v.user_format(argv[0])
    user_valid(node, argv[0])
    return argv[0]


def _resolved(node: Node, path: str) -> str | None:
    """``readlink -f path`` on the simulated host, or None where it prints nothing. A relative
    path would resolve from the login's own directory, which is neither of the allowed
    places: it is treated as unresolvable."""
    if not path.startswith("/"):
        return None
    normal = posixpath.normpath(path)
    parent, name = posixpath.split(normal)
    real_parent = Path(os.path.realpath(node.path(parent)))
    root = Path(os.path.realpath(node.fs_root))
    if not real_parent.is_dir() or not (real_parent == root or root in real_parent.parents):
        return None
    inside = "/" + real_parent.relative_to(root).as_posix()
    return posixpath.join(inside, name) if name else inside


def _allowed(node: Node, user: str, path: str, what: str) -> Path:
    resolved = _resolved(node, path)
    if resolved is None or not resolved.startswith(("/tmp", f"/home/{user}")):  # noqa: S108
        raise HestiaError(Exit.INVALID, f"invalid {what} path {path}")
    return node.path(resolved)


@command("v-add-fs-directory")
def add_fs_directory(node: Node, argv: list[str]) -> str:
    user = _user(node, argv, 2, "v-add-fs-directory", "USER DIR")
    target = _allowed(node, user, argv[1], "destination")
    node.changed = not target.is_dir()
    try:
        target.mkdir(parents=True, exist_ok=True)
    except OSError:
        raise HestiaError(Exit.NOTEXIST, f"directory {argv[1]} was not created") from None
    return ""


@command("v-copy-fs-file")
def copy_fs_file(node: Node, argv: list[str]) -> str:
    user = _user(node, argv, 3, "v-copy-fs-file", "USER SRC_FILE DST_FILE")
    source_path, target_path = argv[1], argv[2]
    if not source_path.startswith("/") or not node.path(source_path).is_file():
        raise HestiaError(Exit.NOTEXIST, f"{source_path} doesn't exist")
    source = _allowed(node, user, source_path, "source")
    target = _allowed(node, user, target_path, "destination")
    in_home = f"/home/{user}/"
    readable = source_path.startswith(in_home) or source.stat().st_mode & 0o004
    if not readable or target.is_dir():
        raise HestiaError(Exit.NOTEXIST, f"file {source_path} was not copied")
    shutil.copyfile(source, target)
    node.changed = True
    return ""


@command("v-delete-fs-file")
def delete_fs_file(node: Node, argv: list[str]) -> str:
    user = _user(node, argv, 2, "v-delete-fs-file", "USER FILE")
    target = _allowed(node, user, argv[1], "destination")
    if target.is_dir():
        raise HestiaError(Exit.NOTEXIST, f"file {argv[1]} was not deleted")
    node.changed = target.exists()
    target.unlink(missing_ok=True)
    return ""
