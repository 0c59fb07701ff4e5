"""The ``v-*`` command table and the checks the commands share.

``run_command(node, argv)`` consumes a ``Node`` (the state plus what the node is) and an argv
whose first item is the bare command name, and emits a ``CommandResult``: Hestia's exit code, what
it prints on stdout (Hestia prints its ``Error: …`` lines there too), stderr, and whether the
state changed. An SSL install that passed its checks ends ``pending`` on Hestia's ``openssl
s_server`` test instead (``OpensslCheck``): the executor holds that window, as it takes time on
a real node, and then ``finish_install`` runs the rest. Nothing here does I/O except reading
files under the node's file-system root (package files, certificate folders, ``/tmp`` password
files), as Hestia reads them from its disk.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath

from ops.devtools.simnode.state import Conf, NodeState, UserData
from ops.devtools.simnode.validation import Exit, HestiaError

# Which ``*_SYSTEM`` variable of hestia.conf a node role stands for.
ROLE_SYSTEMS = {
    "WEB_SYSTEM": "web",
    "WEB_BACKEND": "web",
    "PROXY_SYSTEM": "web",
    "WEB_SSL": "web",
    "MAIL_SYSTEM": "mail",
    "DNS_SYSTEM": "dns",
}


@dataclass
class Node:
    """What a command runs against: state, roles and IP of the node, its file system, the time."""

    state: NodeState
    roles: frozenset[str]
    ip: str
    fs_root: Path
    now: datetime = field(default_factory=lambda: datetime.now(UTC))
    changed: bool = False
    pending: OpensslCheck | None = None

    def check_pair(self, pair_ok: bool, install: Callable[[], str]) -> str:
        """Ends the command on Hestia's key-pair test; ``install`` runs after it (if it passes)."""
        self.pending = OpensslCheck(pair_ok, install)
        return ""

    @property
    def time(self) -> str:
        return self.now.strftime("%H:%M:%S")

    @property
    def date(self) -> str:
        return self.now.strftime("%Y-%m-%d")

    def path(self, posix_path: str) -> Path:
        """Map an absolute path on the simulated host to the node's directory, never outside it."""
        parts = [p for p in PurePosixPath("/", posix_path).parts[1:] if p not in ("..", ".")]
        return self.fs_root.joinpath(*parts)


@dataclass(frozen=True)
class OpensslCheck:
    """An SSL install past its checks, at Hestia's test of the key pair (``pkill openssl``, then
    ``openssl s_server`` with the pair for half a second, then ``kill`` it): ``pair_ok`` is
    whether s_server would have started; ``install`` is what the command does after the test."""

    pair_ok: bool
    install: Callable[[], str]


@dataclass(frozen=True)
class CommandResult:
    exit_code: int
    stdout: str
    stderr: str = ""
    changed: bool = False
    pending: OpensslCheck | None = None


Command = Callable[[Node, list[str]], str]
COMMANDS: dict[str, Command] = {}


def command(name: str) -> Callable[[Command], Command]:
    """Register a ``v-*`` implementation under its Hestia name."""

    def register(fn: Command) -> Command:
        COMMANDS[name] = fn
        return fn

    return register


def run_command(node: Node, argv: list[str]) -> CommandResult:
    """Run ``argv`` (bare ``v-…`` name first) as Hestia would; unknown names exit 127."""
    _load_command_modules()
    name, args = argv[0], argv[1:]
    fn = COMMANDS.get(name)
    if fn is None:
        return CommandResult(127, "", f"bash: {name}: command not found\n")
    node.changed, node.pending = False, None
    return _answer(node, lambda: fn(node, args))


def finish_install(node: Node, check: OpensslCheck, *, killed: bool) -> CommandResult:
    """The rest of an install once its key-pair test is over: s_server gone before its ``kill``
    (a key that is not the certificate's, or another check's ``pkill openssl``) is Hestia's
    exit 2; otherwise the install runs."""
    node.changed, node.pending = False, None
    if killed or not check.pair_ok:
        return _answer(node, _pair_refused)
    return _answer(node, check.install)


def _pair_refused() -> str:
    raise HestiaError(Exit.INVALID, "ssl certificate key pair is not valid")


def _answer(node: Node, work: Callable[[], str]) -> CommandResult:
    try:
        out = work()
    except HestiaError as err:
        text = f"{err.usage}\n" if err.usage else f"Error: {err.message}\n"
        return CommandResult(int(err.code), text, "", node.changed)
    return CommandResult(0, out, "", node.changed, node.pending)


def _load_command_modules() -> None:
    # The command modules register themselves on import; importing here keeps them out of
    # this module's import graph (they import it).
    from ops.devtools.simnode import v_dns, v_fs, v_mail, v_ssl, v_users, v_web  # noqa: F401


# -- checks shared by the commands (func/main.sh, func/domain.sh) -----------------------------


def system_enabled(node: Node, system: str) -> None:
    """``is_system_enabled``: a role this node lacks is a service Hestia has not configured."""
    if ROLE_SYSTEMS[system] not in node.roles:
        raise HestiaError(Exit.DISABLED, f"{system} is not enabled")


def user_valid(node: Node, user: str) -> UserData:
    data = node.state.users.get(user)
    if data is None:
        raise HestiaError(Exit.NOTEXIST, f"user {user} doesn't exist")
    return data


def unsuspended(conf: Conf, what: str, name: str) -> None:
    if conf.get("SUSPENDED") == "yes":
        raise HestiaError(Exit.SUSPENDED, f"{what} {name} is suspended")


def suspended(conf: Conf, what: str, name: str) -> None:
    if conf.get("SUSPENDED") != "yes":
        raise HestiaError(Exit.UNSUSPENDED, f"{what} {name} is not suspended")


def not_exist(what: str, name: str) -> HestiaError:
    return HestiaError(Exit.NOTEXIST, f"{what} {name} doesn't exist")


def domain_new(node: Node, kind: str, user: str, names: list[str]) -> None:
    """``is_domain_new``: a name must be free across *all* users for its own kind, and may be
    used by the same user for another kind (web + mail + dns of one domain)."""
    for name in [n for n in names if n]:
        for other, data in node.state.users.items():
            for system, taken in (("web", data.web), ("dns", data.dns), ("mail", data.mail)):
                if system in node.roles and name in taken and (kind == system or other != user):
                    label = {"web": "Web", "dns": "DNS", "mail": "Mail"}[system]
                    raise HestiaError(Exit.EXISTS, f"{label} domain {name} exists")
            if kind == "web" and "web" in node.roles:
                for conf in data.web.values():
                    if name in conf.get("ALIAS", "").split(","):
                        raise HestiaError(Exit.EXISTS, f"Web alias {name} exists")


def package_full(data: UserData, limit_key: str, used: int) -> None:
    """``is_package_full``: ``used`` objects already at the package's limit → exit 8."""
    limit = data.conf.get(limit_key, "unlimited")
    if limit != "unlimited" and limit.isdigit() and used >= int(limit):
        raise HestiaError(Exit.LIMIT, f"{limit_key} limit is reached :: upgrade user package")


def read_password(node: Node, value: str) -> str:
    """``is_password_valid``: a ``/tmp/…`` argument naming a file means "the password is in it"."""
    if value.startswith("/tmp/") and "../" not in value:  # noqa: S108 — Hestia's convention
        path = node.path(value)
        if path.is_file():
            return path.read_text(encoding="utf-8").splitlines()[0] if path.stat().st_size else ""
    return value


def domain_is_ip(domain: str) -> None:
    from ops.devtools.simnode.validation import is_ipv4

    if is_ipv4(domain):
        raise HestiaError(Exit.ARGS, "Invalid domain format. IP address detected as input.")
