"""Hestia's exit codes and argument checks (``func/main.sh``), as Python.

Each check consumes one argument and either returns or raises ``HestiaError(code, message)``;
the dispatcher turns that into Hestia's ``Error: <message>`` on stdout and the exit code.
"""

from __future__ import annotations

import ipaddress
import re
from enum import IntEnum


class Exit(IntEnum):
    OK = 0
    ARGS = 1
    INVALID = 2
    NOTEXIST = 3
    EXISTS = 4
    SUSPENDED = 5
    UNSUSPENDED = 6
    INUSE = 7
    LIMIT = 8
    PASSWORD = 9
    FORBIDEN = 10
    DISABLED = 11
    PARSING = 12
    DISK = 13
    LA = 14
    CONNECT = 15
    FTP = 16
    DB = 17
    RRD = 18
    UPDATE = 19
    RESTART = 20


class HestiaError(Exception):
    """A ``check_result`` failure: the exit code and the text Hestia prints."""

    def __init__(self, code: int, message: str, *, usage: str = "") -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.usage = usage


def check_args(argv: list[str], needed: int, command: str, usage: str) -> None:
    """``check_args``: too few arguments → the usage line and exit 1."""
    if len(argv) < needed:
        raise HestiaError(Exit.ARGS, "not enought arguments", usage=f"Usage: {command} {usage}")


def arg(argv: list[str], index: int, default: str = "") -> str:
    """``$N`` with bash's ``${N-default}``: the default only when the argument is absent."""
    return argv[index] if index < len(argv) else default


_USER = re.compile(r"^[A-Za-z0-9][-|._A-Za-z0-9]{0,28}[A-Za-z0-9]$")
_NEW_USER = re.compile(r"^[a-zA-Z][-|_A-Za-z0-9]{0,28}[A-Za-z0-9]$")
_LOCALPART = re.compile(r"^[A-Za-z0-9_.-][A-Za-z0-9_.-]{0,62}[A-Za-z0-9_.-]$")
_OBJECT = re.compile(r"^[A-Za-z0-9][-|._A-Za-z0-9]{0,64}[A-Za-z0-9]$")
_EMAIL = re.compile(r"^[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.(?:[A-Za-z]{2,63}|xn--[A-Za-z0-9]{2,63})$")
_DOMAIN_EXCLUDE = re.compile(r"""[\[\]!@#$^&*()+={},<>?_/\\"|'`;%\s]""")
_RESERVED_USERS = {"aria", "aria_log", "mysql", "mysql_upgrade", "ib", "ib_buffer", "ddl"} | {
    "ddl_recovery",
    "performance",
    "sudo",
}
DNS_TYPES = frozenset(
    ("A", "AAAA", "NS", "CNAME", "MX", "TXT", "SRV", "DNSKEY", "KEY", "IPSECKEY", "PTR", "SPF")
) | {"TLSA", "CAA", "DS"}


def user_format(value: str, *, new: bool = False) -> None:
    ok = bool(re.fullmatch(r"[A-Za-z0-9]", value)) if len(value) == 1 else bool(_USER.match(value))
    if not ok or not value.isascii() or (new and not _NEW_USER.match(value)):
        raise HestiaError(Exit.INVALID, f"invalid user format :: {value}")
    if new and value.lower() in _RESERVED_USERS:
        raise HestiaError(Exit.INVALID, f"The user name '{value}' is reserved and cannot be used.")


def domain_format(value: str, name: str = "domain") -> None:
    bad = (
        _DOMAIN_EXCLUDE.search(value)
        or value.isdigit()
        or ".." in value
        or value.startswith(("-", "."))
        or value.endswith(("-", "."))
        or ".-" in value
        or "-." in value
        or value == "www"
        or "\n" in value
    )
    if bad:
        raise HestiaError(Exit.INVALID, f"invalid {name} format :: {value}")


def format_domain(value: str) -> str:
    """``format_domain``: lower-case, drop a leading ``www.`` and stray dots and blanks."""
    value = value.lower()
    value = value.removeprefix("www.")
    return value.rstrip(".").lstrip(".").strip(" \t")


def is_ipv4(value: str) -> bool:
    try:
        ipaddress.IPv4Address(value)
    except ValueError:
        return False
    return True


def ip_format(value: str) -> None:
    if not is_ipv4(value):
        raise HestiaError(Exit.INVALID, f"invalid ip :: {value}")


def email_format(value: str) -> None:
    if not _EMAIL.match(value):
        raise HestiaError(Exit.INVALID, f"invalid email format :: {value}")


def object_format(value: str, name: str) -> None:
    """Packages and templates: ``is_object_format_valid``."""
    if not _OBJECT.match(value):
        raise HestiaError(Exit.INVALID, f"invalid {name} format :: {value}")


def localpart_format(value: str, name: str = "account") -> None:
    ok = (
        bool(re.fullmatch(r"[A-Za-z0-9]", value))
        if len(value) == 1
        else bool(_LOCALPART.match(value))
    )
    if not ok or not value.isascii():
        raise HestiaError(Exit.INVALID, f"invalid {name} format :: {value}")


def name_format(value: str) -> None:
    if re.search(r"['\"<>|]", value) or "\n" in value:
        raise HestiaError(Exit.INVALID, f"Invalid name contains qoutes (\" or ') :: {value}")


def common_spaces_format(value: str, name: str) -> None:
    """``is_common_format_spaces_valid``: no shell or quoting characters, no tab or line
    break, no leading or trailing blank."""
    if re.search(r"""[!|#$^&()+={}:<>?/\\"';%`\t\n\r\v\f]""", value) or value != value.strip(" "):
        raise HestiaError(Exit.INVALID, f"invalid {name} format :: {value}")


def int_format(value: str, name: str) -> None:
    if not re.fullmatch(r"[0-9]+", value):
        raise HestiaError(Exit.INVALID, f"invalid {name} format :: {value}")


def id_format(value: str) -> None:
    if not re.fullmatch(r"[1-9][0-9]*", value):
        raise HestiaError(Exit.INVALID, f"invalid id format :: {value}")


def boolean_format(value: str, name: str) -> None:
    if value not in ("yes", "no"):
        raise HestiaError(Exit.INVALID, f"invalid {name} format :: {value}")


def restart_format(value: str) -> None:
    if value and value not in ("yes", "no", "ssl", "reload", "updatessl", "scheduled"):
        raise HestiaError(Exit.INVALID, f"invalid restart format :: {value}")


def list_format(value: str) -> None:
    """``is_type_valid 'plain json shell csv'``."""
    if value not in ("plain", "json", "shell", "csv"):
        raise HestiaError(Exit.INVALID, f"{value} type is invalid")


def dns_type_format(value: str) -> None:
    if value not in DNS_TYPES:
        raise HestiaError(Exit.INVALID, f"invalid dns record type format :: {value}")


def common_format(value: str, name: str) -> None:
    """``is_common_format_valid`` (record names): no quotes, backslashes or blanks."""
    if re.search(r"['\"\\`\s]", value) or len(value) > 253:
        raise HestiaError(Exit.INVALID, f"invalid {name} format :: {value}")


def extensions_format(value: str) -> None:
    if not re.fullmatch(r"[A-Za-z0-9,._-]*", value):
        raise HestiaError(Exit.INVALID, f"invalid proxy extention format :: {value}")


def alias_format(value: str) -> None:
    for alias in value.split(","):
        bad = (
            re.search(r"""[\[\]!@#$^&()+={},<>?_/\\"|'`;%\s]""", alias)
            or ".." in alias
            or alias.startswith(("-", "."))
            or alias.endswith(("-", "."))
            or ".-" in alias
            or "-." in alias
            or ("*" in alias and not alias.startswith("*."))
        )
        if bad:
            raise HestiaError(Exit.INVALID, f"invalid alias format :: {alias}")
