"""What each part needs of the settings, checked before anything starts.

``checked_system(component)`` is what ``hostwright up`` and ``serve`` start from: the System,
its settings checked and the gateway's address already listened on, or a SettingsError
naming every problem (a taken address among them).

``readiness_problems(settings, component)`` consumes the loaded settings and the part
``hostwright up`` (``"all"``) or ``hostwright serve`` is about to run, and emits every
problem in the way, one line each. The CLI prints them all and exits 2 before it opens a
database, a queue or a port: an operator learns of every missing setting in one go, instead
of one per start after the parts already ran for a while.
"""

from __future__ import annotations

import socket

from ops.adapters.public_suffix import DEBIAN_LIST
from ops.bootstrap import System
from ops.credentials import credentials_from
from ops.runtime.gateway_listener import ListenError
from ops.settings import Settings, SettingsError, listen_problem

# parts that use the secret key: the gateway seals passwords, handlers unseal them
_SEALING = ("all", "gateway", "handler.web", "handler.mail", "handler.dns", "handler.ssl")
# parts that need no transport: they read and write the database only
_DATABASE_ONLY = ("all", "projections")

NO_CREDENTIAL = (
    "the gateway needs a credential: set HOSTWRIGHT_API_TOKEN (WHMCS), "
    "HOSTWRIGHT_STAFF_TOKEN or HOSTWRIGHT_TOKENS_FILE"
)
SSL_OFF = "serve handler ssl needs HOSTWRIGHT_SSL=auto (automatic SSL is off)"
SECRET_KEY_MISSING = "HOSTWRIGHT_SECRET_KEY must be set (it seals passwords)"  # noqa: S105 - a message, not a key


def checked_system(component: str) -> System:
    """The System for ``component``, its settings checked for everything the part needs and
    the gateway's address already listened on; else a SettingsError naming every problem
    (a taken address among them) before anything has started."""
    settings, problems = Settings.read()
    problems += readiness_problems(settings, component)
    system = System(settings)
    listening: list[socket.socket] = []
    if component in ("all", "gateway") and listen_problem(settings.listen) is None:
        try:
            listening = system.listeners()
        except ListenError as exc:
            problems.append(str(exc))
    if problems:
        for listener in listening:
            listener.close()
        raise SettingsError(*dict.fromkeys(problems))
    return system


def readiness_problems(settings: Settings, component: str) -> list[str]:
    problems: list[str] = []
    if component not in _DATABASE_ONLY and not settings.amqp_url:
        problems.append(
            f"serve {component.replace('.', ' ')} needs HOSTWRIGHT_AMQP_URL: without it the "
            "in-process transport would carry messages only inside this process; set "
            "HOSTWRIGHT_AMQP_URL or run every part in one process with `hostwright up`"
        )
    if component in ("all", "gateway"):
        problems += _credential_problems(settings)
    if component in _SEALING and not settings.secret_key:
        problems.append(SECRET_KEY_MISSING)
    problems += _ssl_problems(settings, component)
    return problems


def _ssl_problems(settings: Settings, component: str) -> list[str]:
    """``handler ssl`` runs only with automatic SSL on, and then needs the suffix list."""
    if component == "handler.ssl" and not settings.ssl_auto:
        return [SSL_OFF]
    if component in ("all", "handler.ssl") and settings.ssl_auto and not DEBIAN_LIST.is_file():
        return [f"HOSTWRIGHT_SSL=auto needs the Public Suffix List at {DEBIAN_LIST} (publicsuffix)"]
    return []


def _credential_problems(settings: Settings) -> list[str]:
    try:
        credentials = credentials_from(settings)
    except SettingsError as exc:
        return list(exc.problems)
    except ValueError:  # a token too short: the settings' own check has named it
        return []
    return [] if len(credentials) else [NO_CREDENTIAL]
