"""What each part needs of the settings, checked before anything starts.

``readiness_problems(settings, component)`` consumes the loaded settings and the part
``hostwright up`` (``"all"``) or ``hostwright serve`` is about to run, and emits every
problem in the way, one line each. The CLI prints them all and exits 2 before it opens a
database, a queue or a port: an operator learns of every missing setting in one go, instead
of one per start after the parts already ran for a while.
"""

from __future__ import annotations

from ops.credentials import credentials_from
from ops.settings import Settings, SettingsError

# parts that use the secret key: the gateway seals passwords, handlers unseal them
_SEALING = ("all", "gateway", "handler.web", "handler.mail", "handler.dns")
# parts that need no transport: they read and write the database only
_DATABASE_ONLY = ("all", "projections")

NO_CREDENTIAL = (
    "the gateway needs a credential: set HOSTWRIGHT_API_TOKEN (WHMCS), "
    "HOSTWRIGHT_STAFF_TOKEN or HOSTWRIGHT_TOKENS_FILE"
)
SECRET_KEY_MISSING = "HOSTWRIGHT_SECRET_KEY must be set (it seals passwords)"  # noqa: S105 - a message, not a key


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
    return problems


def _credential_problems(settings: Settings) -> list[str]:
    try:
        credentials = credentials_from(settings)
    except SettingsError as exc:
        return list(exc.problems)
    except ValueError:  # a token too short: the settings' own check has named it
        return []
    return [] if len(credentials) else [NO_CREDENTIAL]
