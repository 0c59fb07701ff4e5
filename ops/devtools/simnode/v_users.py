"""Users and packages: ``v-add-user`` … ``v-list-user-package`` with Hestia's order of checks.

``v-add-user-package PKG_FILE PACKAGE [REWRITE]`` reads the package definition from a file of
``KEY='value'`` lines, exactly as Hestia does; the path is on the simulated host, i.e. under the
node's file-system root, where a client puts it with SFTP (the node serves SFTP chrooted there).
"""

from __future__ import annotations

import hashlib
import re
import secrets
from typing import Any

from ops.devtools.simnode import validation as v
from ops.devtools.simnode.commands import (
    Node,
    command,
    read_password,
    unsuspended,
    user_valid,
)
from ops.devtools.simnode.output import render
from ops.devtools.simnode.state import DEFAULT_PACKAGE, Conf, UserData
from ops.devtools.simnode.usage_file import read_usage, user_usage
from ops.devtools.simnode.validation import Exit, HestiaError, arg, check_args

_PACKAGE_KEYS = [k for k in DEFAULT_PACKAGE if k not in ("TIME", "DATE")]
# v-add-user-package takes each count limit of a package file as a whole number or
# "unlimited", and the resource limits (CPU, memory, swap) only on a node that limits resources,
# which a simulated one does not: the count limits are what a fresh install leaves unlimited.
_RESOURCE_LIMITS = frozenset({"CPU_QUOTA", "CPU_QUOTA_PERIOD", "MEMORY_LIMIT", "SWAP_LIMIT"})
_COUNT_LIMITS = [
    key
    for key, value in DEFAULT_PACKAGE.items()
    if value == "unlimited" and key not in _RESOURCE_LIMITS
]
# v-list-users json prints these for each user, in Hestia 1.10's order (bin/v-list-users):
# the names without U_ are the package's limits the user holds, the U_ ones what it uses
_USERS_JSON_KEYS = [
    "NAME",
    "PACKAGE",
    "WEB_TEMPLATE",
    "BACKEND_TEMPLATE",
    "PROXY_TEMPLATE",
    "DNS_TEMPLATE",
    "WEB_DOMAINS",
    "WEB_ALIASES",
    "DNS_DOMAINS",
    "DNS_RECORDS",
    "MAIL_DOMAINS",
    "MAIL_ACCOUNTS",
    "DATABASES",
    "CRON_JOBS",
    "DISK_QUOTA",
    "CPU_QUOTA",
    "CPU_QUOTA_PERIOD",
    "MEMORY_LIMIT",
    "SWAP_LIMIT",
    "BANDWIDTH",
    "NS",
    "SHELL",
    "BACKUPS",
    "CONTACT",
    "CRON_REPORTS",
    "RKEY",
    "ROLE",
    "SUSPENDED",
    "SUSPENDED_USERS",
    "SUSPENDED_WEB",
    "SUSPENDED_DNS",
    "SUSPENDED_MAIL",
    "SUSPENDED_DB",
    "SUSPENDED_CRON",
    "IP_AVAIL",
    "IP_OWNED",
    "U_USERS",
    "U_DISK",
    "U_DISK_DIRS",
    "U_DISK_WEB",
    "U_DISK_MAIL",
    "U_DISK_DB",
    "U_BANDWIDTH",
    "U_WEB_DOMAINS",
    "U_WEB_SSL",
    "U_WEB_ALIASES",
    "U_DNS_DOMAINS",
    "U_DNS_RECORDS",
    "U_MAIL_DOMAINS",
    "U_MAIL_DKIM",
    "U_MAIL_ACCOUNTS",
    "U_DATABASES",
    "U_CRON_JOBS",
    "U_BACKUPS",
    "LANGUAGE",
    "TIME",
    "DATE",
]
# v-list-user USER json prints its own, longer list (bin/v-list-user): no resource limits, but
# the home, two-factor, interface and login settings the list of all users leaves out
_USER_JSON_KEYS = [
    "NAME",
    "PACKAGE",
    "WEB_TEMPLATE",
    "BACKEND_TEMPLATE",
    "PROXY_TEMPLATE",
    "DNS_TEMPLATE",
    "WEB_DOMAINS",
    "WEB_ALIASES",
    "DNS_DOMAINS",
    "DNS_RECORDS",
    "MAIL_DOMAINS",
    "MAIL_ACCOUNTS",
    "DATABASES",
    "CRON_JOBS",
    "DISK_QUOTA",
    "BANDWIDTH",
    "HOME",
    "NS",
    "SHELL",
    "BACKUPS",
    "CONTACT",
    "CRON_REPORTS",
    "RKEY",
    "TWOFA",
    "QRCODE",
    "ROLE",
    "SUSPENDED",
    "SUSPENDED_USERS",
    "SUSPENDED_WEB",
    "SUSPENDED_DNS",
    "SUSPENDED_MAIL",
    "SUSPENDED_DB",
    "SUSPENDED_CRON",
    "IP_AVAIL",
    "IP_OWNED",
    "U_USERS",
    "U_DISK",
    "U_DISK_DIRS",
    "U_DISK_WEB",
    "U_DISK_MAIL",
    "U_DISK_DB",
    "U_BANDWIDTH",
    "U_WEB_DOMAINS",
    "U_WEB_SSL",
    "U_WEB_ALIASES",
    "U_DNS_DOMAINS",
    "U_DNS_RECORDS",
    "U_MAIL_DOMAINS",
    "U_MAIL_DKIM",
    "U_MAIL_ACCOUNTS",
    "U_DATABASES",
    "U_CRON_JOBS",
    "U_BACKUPS",
    "BACKUPS_INCREMENTAL",
    "LANGUAGE",
    "THEME",
    "NOTIFICATIONS",
    "PREF_UI_SORT",
    "LOGIN_DISABLED",
    "LOGIN_USE_IPLIST",
    "LOGIN_ALLOW_IPS",
    "PHPCLI",
    "TIME",
    "DATE",
]
# v-list-user-packages leaves out BACKEND_TEMPLATE, RATE_LIMIT and BACKUPS_INCREMENTAL, which
# v-list-user-package (one package) shows
_PACKAGES_JSON_KEYS = [
    "WEB_TEMPLATE",
    "PROXY_TEMPLATE",
    "DNS_TEMPLATE",
    "WEB_DOMAINS",
    "WEB_ALIASES",
    "DNS_DOMAINS",
    "DNS_RECORDS",
    "MAIL_DOMAINS",
    "MAIL_ACCOUNTS",
    "DATABASES",
    "CRON_JOBS",
    "DISK_QUOTA",
    "CPU_QUOTA",
    "CPU_QUOTA_PERIOD",
    "MEMORY_LIMIT",
    "SWAP_LIMIT",
    "BANDWIDTH",
    "NS",
    "SHELL",
    "BACKUPS",
    "TIME",
    "DATE",
]
_PACKAGE_JSON_KEYS = [*_PACKAGE_KEYS, "TIME", "DATE"]


def password_hash(password: str) -> str:
    """What the simulator keeps instead of the password (Hestia keeps the shadow hash)."""
    salt = secrets.token_hex(8)
    return f"$sim${salt}${hashlib.sha256((salt + password).encode()).hexdigest()}"


def password_matches(stored: str, password: str) -> bool:
    """Whether ``stored`` (a ``password_hash``) is the hash of ``password``: how a test asks
    a simulated node which password a user or mailbox has, without the node keeping it."""
    parts = stored.split("$")
    if len(parts) != 4 or parts[1] != "sim":
        return False
    digest = hashlib.sha256((parts[2] + password).encode()).hexdigest()
    return secrets.compare_digest(digest, parts[3])


def usage(data: UserData) -> Conf:
    """The ``U_*``/``SUSPENDED_*`` counters, computed from the objects rather than kept."""
    dns_records = sum(len(z.records) for z in data.dns.values())
    return {
        "U_WEB_DOMAINS": str(len(data.web)),
        "U_WEB_SSL": str(sum(1 for c in data.web.values() if c.get("SSL") == "yes")),
        "U_WEB_ALIASES": str(
            sum(len([a for a in c["ALIAS"].split(",") if a]) for c in data.web.values())
        ),
        "U_DNS_DOMAINS": str(len(data.dns)),
        "U_DNS_RECORDS": str(dns_records),
        "U_MAIL_DOMAINS": str(len(data.mail)),
        "U_MAIL_DKIM": str(sum(1 for m in data.mail.values() if m.conf.get("DKIM") == "yes")),
        "U_MAIL_ACCOUNTS": str(sum(len(m.accounts) for m in data.mail.values())),
        "SUSPENDED_WEB": str(sum(1 for c in data.web.values() if c.get("SUSPENDED") == "yes")),
        "SUSPENDED_DNS": str(sum(1 for z in data.dns.values() if z.conf.get("SUSPENDED") == "yes")),
        "SUSPENDED_MAIL": str(
            sum(1 for m in data.mail.values() if m.conf.get("SUSPENDED") == "yes")
        ),
    }


def _user_fields(
    node: Node, name: str, held: dict[str, Any] | None = None, keys: list[str] = _USER_JSON_KEYS
) -> dict[str, str]:
    """The user's fields as ``v-list-user`` prints them, or with ``keys`` another list's."""
    data = node.state.users[name]
    given = user_usage(held if held is not None else read_usage(node.fs_root.parent), name)
    conf = {**data.conf, **usage(data), **given, "HOME": f"/home/{name}"}
    return {key: conf.get(key, "") for key in keys}


@command("v-add-user")
def add_user(node: Node, argv: list[str]) -> str:
    check_args(argv, 3, "v-add-user", "USER PASSWORD EMAIL [PACKAGE] [NAME] ")
    user, password, email, package = argv[0], argv[1], argv[2], arg(argv, 3, "default")
    name = " ".join(a for a in (arg(argv, 4), arg(argv, 5)) if a)
    v.user_format(user, new=True)
    v.email_format(email)
    if package:
        v.object_format(package, "package")
    if name:
        v.name_format(name)
    if user in node.state.users:
        raise HestiaError(Exit.EXISTS, f"user {user} exists")
    password = read_password(node, password)
    pkg = node.state.packages.get(package)
    if pkg is None:
        raise HestiaError(Exit.NOTEXIST, f"package {package} doesn't exist")
    conf: Conf = {"NAME": name, "PACKAGE": package}
    conf.update({k: pkg.get(k, "") for k in _PACKAGE_KEYS})
    conf.update(
        CONTACT=email,
        CRON_REPORTS="yes",
        MD5=password_hash(password),
        RKEY=secrets.token_urlsafe(12),
        ROLE="user",
        SUSPENDED="no",
        SUSPENDED_USERS="0",
        SUSPENDED_DB="0",
        SUSPENDED_CRON="0",
        IP_AVAIL="1",
        IP_OWNED="0",
        U_USERS="0",
        NOTIFICATIONS="no",
        PREF_UI_SORT="name",
        LOGIN_DISABLED="no",
        LOGIN_USE_IPLIST="no",
        TIME=node.time,
        DATE=node.date,
    )
    for key in ("U_DISK", "U_DISK_DIRS", "U_DISK_WEB", "U_DISK_MAIL", "U_DISK_DB", "U_BANDWIDTH"):
        conf[key] = "0"
    for key in ("U_DATABASES", "U_CRON_JOBS", "U_BACKUPS"):
        conf[key] = "0"
    node.state.users[user] = UserData(conf=conf)
    for sub in ("web", "mail", "tmp"):
        node.path(f"/home/{user}/{sub}").mkdir(parents=True, exist_ok=True)
    node.changed = True
    return ""


@command("v-delete-user")
def delete_user(node: Node, argv: list[str]) -> str:
    check_args(argv, 1, "v-delete-user", "USER [RESTART]")
    v.user_format(argv[0])
    v.restart_format(arg(argv, 1))
    user_valid(node, argv[0])
    del node.state.users[argv[0]]
    _remove_tree(node, f"/home/{argv[0]}")
    node.changed = True
    return ""


def _remove_tree(node: Node, posix_path: str) -> None:
    import shutil

    shutil.rmtree(node.path(posix_path), ignore_errors=True)


@command("v-list-user")
def list_user(node: Node, argv: list[str]) -> str:
    check_args(argv, 1, "v-list-user", "USER [FORMAT]")
    v.user_format(argv[0])
    user_valid(node, argv[0])
    return render({argv[0]: _user_fields(node, argv[0])}, arg(argv, 1, "shell"), name_key="USER")


@command("v-list-users")
def list_users(node: Node, argv: list[str]) -> str:
    held = read_usage(node.fs_root.parent)  # read once for every user
    users = {
        name: _user_fields(node, name, held, _USERS_JSON_KEYS) for name in sorted(node.state.users)
    }
    return render(users, arg(argv, 0, "shell"), name_key="USER")


def _set_suspended(data: UserData, value: str) -> None:
    # v-suspend-user / v-unsuspend-user cascade to every web, mail and DNS domain of the user,
    # and the domain commands rewrite every mailbox and record of the domain with it (sed).
    data.conf["SUSPENDED"] = value
    for conf in data.web.values():
        conf["SUSPENDED"] = value
    for mail in data.mail.values():
        mail.conf["SUSPENDED"] = value
        for account in mail.accounts.values():
            account["SUSPENDED"] = value
    for zone in data.dns.values():
        zone.conf["SUSPENDED"] = value
        for record in zone.records:
            record["SUSPENDED"] = value


@command("v-suspend-user")
def suspend_user(node: Node, argv: list[str]) -> str:
    check_args(argv, 1, "v-suspend-user", "USER [RESTART]")
    v.user_format(argv[0])
    v.restart_format(arg(argv, 1))
    data = user_valid(node, argv[0])
    unsuspended(data.conf, "user", argv[0])
    _set_suspended(data, "yes")
    node.changed = True
    return ""


@command("v-unsuspend-user")
def unsuspend_user(node: Node, argv: list[str]) -> str:
    # Hestia does not check that the user is suspended here: unsuspending twice exits 0.
    check_args(argv, 1, "v-unsuspend-user", "USER [RESTART]")
    v.user_format(argv[0])
    v.restart_format(arg(argv, 1))
    data = user_valid(node, argv[0])
    _set_suspended(data, "no")
    node.changed = True
    return ""


@command("v-change-user-password")
def change_user_password(node: Node, argv: list[str]) -> str:
    check_args(argv, 1, "v-change-user-password", "USER [PASSWORD]")
    v.user_format(argv[0])
    data = user_valid(node, argv[0])
    unsuspended(data.conf, "user", argv[0])
    data.conf["MD5"] = password_hash(read_password(node, arg(argv, 1)))
    node.changed = True
    return ""


@command("v-change-user-name")
def change_user_name(node: Node, argv: list[str]) -> str:
    check_args(argv, 2, "v-change-user-name", "USER NAME [LAST_NAME]")
    user, name, last = argv[0], argv[1], arg(argv, 2)
    v.user_format(user)
    v.name_format(name)
    data = user_valid(node, user)
    unsuspended(data.conf, "user", user)
    v.common_spaces_format(name, "name")
    if last:
        v.common_spaces_format(last, "last name")
    data.conf["NAME"] = f"{name} {last}" if last else name
    node.changed = True
    return ""


@command("v-change-user-package")
def change_user_package(node: Node, argv: list[str]) -> str:
    check_args(argv, 2, "v-change-user-package", "USER PACKAGE [FORCE]")
    user, package, force = argv[0], argv[1], arg(argv, 2)
    v.user_format(user)
    v.object_format(package, "package")
    data = user_valid(node, user)
    pkg = node.state.packages.get(package)
    if pkg is None:
        raise HestiaError(Exit.NOTEXIST, f"package {package} doesn't exist")
    if force != "yes":
        used = usage(data)
        for key, used_key in (("WEB_DOMAINS", "U_WEB_DOMAINS"), ("DNS_DOMAINS", "U_DNS_DOMAINS")):
            _covers(pkg, key, used[used_key])
        _covers(pkg, "MAIL_DOMAINS", used["U_MAIL_DOMAINS"])
    data.conf.update({k: pkg.get(k, "") for k in _PACKAGE_KEYS})
    data.conf["PACKAGE"] = package
    node.changed = True
    return ""


def _covers(pkg: Conf, key: str, used: str) -> None:
    limit = pkg.get(key, "unlimited")
    if limit != "unlimited" and limit.isdigit() and int(used) > int(limit):
        raise HestiaError(Exit.LIMIT, f"Package doesn't cover {key.rstrip('S')} usage")


_PKG_LINE = re.compile(r"""^([A-Z_]+)=(?:'([^']*)'|"([^"]*)"|(\S*))\s*$""")


def _parse_package_file(text: str) -> Conf:
    conf: Conf = {}
    for line in text.splitlines():
        match = _PKG_LINE.match(line.strip())
        if match:
            conf[match[1]] = next((g for g in match.groups()[1:] if g is not None), "")
    return conf


@command("v-add-user-package")
def add_user_package(node: Node, argv: list[str]) -> str:
    check_args(argv, 2, "v-add-user-package", "PKG_DIR PACKAGE")
    pkg_file, package, rewrite = argv[0], argv[1], arg(argv, 2)
    v.object_format(package, "package")
    if rewrite != "yes" and package in node.state.packages:
        raise HestiaError(Exit.EXISTS, f"package {package} already exists.")
    if rewrite == "yes" and package not in node.state.packages:
        raise HestiaError(Exit.NOTEXIST, f"package {package} doesn't exist")
    path = node.path(pkg_file)
    if not path.is_file():
        raise HestiaError(Exit.NOTEXIST, f"{pkg_file} does not exist")
    conf = _parse_package_file(path.read_text(encoding="utf-8"))
    for key in _COUNT_LIMITS:
        value = conf.get(key, "")
        if value != "unlimited":
            v.int_format(value, key)
    v.int_format(conf.get("RATE_LIMIT", ""), "RATE_LIMIT")
    v.int_format(conf.get("BACKUPS", ""), "BACKUPS")
    for ns in filter(None, conf.get("NS", "").split(",")):
        v.domain_format(ns, "ns")
    stored = {k: conf.get(k, "") for k in _PACKAGE_KEYS}
    stored["SHELL"] = stored["SHELL"].rsplit("/", 1)[-1]
    stored.update(TIME=node.time, DATE=node.date)
    node.state.packages[package] = stored
    node.changed = True
    return ""


def _package_fields(pkg: Conf, keys: list[str] = _PACKAGE_JSON_KEYS) -> dict[str, str]:
    return {key: pkg.get(key, "") for key in keys}


@command("v-delete-user-package")
def delete_user_package(node: Node, argv: list[str]) -> str:
    """As Hestia does it: every user whose package name *starts with* PACKAGE (Hestia greps
    ``PACKAGE='PACKAGE``) is moved to ``default`` first; a package in use is not refused."""
    check_args(argv, 1, "v-delete-user-package", "PACKAGE")
    package = argv[0]
    v.object_format(package, "package")
    if package not in node.state.packages:
        raise HestiaError(Exit.NOTEXIST, f"package {package} doesn't exist")
    default = node.state.packages.get("default", {})
    on_it = [n for n, d in dict.items(node.state.users) if d.conf["PACKAGE"].startswith(package)]
    for name in on_it:
        data = node.state.users[name]  # reached by name, so its change is saved
        data.conf.update({k: default.get(k, "") for k in _PACKAGE_KEYS})
        data.conf["PACKAGE"] = "default"
    del node.state.packages[package]
    node.changed = True
    return ""


@command("v-list-user-packages")
def list_user_packages(node: Node, argv: list[str]) -> str:
    packages = {
        name: _package_fields(p, _PACKAGES_JSON_KEYS)
        for name, p in sorted(node.state.packages.items())
    }
    return render(packages, arg(argv, 0, "shell"), name_key="PKG_NAME")


@command("v-list-user-package")
def list_user_package(node: Node, argv: list[str]) -> str:
    check_args(argv, 1, "v-list-user-package", "PACKAGE [FORMAT]")
    v.object_format(argv[0], "package")
    pkg = node.state.packages.get(argv[0])
    if pkg is None:
        raise HestiaError(Exit.NOTEXIST, f"package {argv[0]} doesn't exist")
    return render({argv[0]: _package_fields(pkg)}, arg(argv, 1, "shell"), name_key="PKG_NAME")
