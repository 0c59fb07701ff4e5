"""argparse types for the command line's option values.

Each turns an option's text into its value or raises ``argparse.ArgumentTypeError``, which
argparse prints as ``hostwright …: error: argument --OPTION: …`` with exit 2 before the command
runs: an impossible value is named with its option, never a traceback, an environment
variable the operator did not set, or a benchmark that measures nothing.
"""

from __future__ import annotations

import argparse

from ops.settings import listen_problem

BENCH_STORES = ("sqlite", "postgresql")
# two certificates a domain, and one ACME account may place 300 new orders in 3 hours
# (the warm-up domain's two among them): ops/devtools/bench/ssl
SSL_BENCH_MAX_DOMAINS = 149


def listen_address(text: str) -> str:
    """HOST:PORT with a port from 0 to 65535."""
    problem = listen_problem(text)
    if problem is not None:
        raise argparse.ArgumentTypeError(problem)
    return text


def worker_count(text: str) -> int:
    """A whole number of processes, at least 1."""
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number of at least 1, not {text!r}")
    return int(text)


def milliseconds_list(text: str) -> tuple[int, ...]:
    """Comma-separated whole milliseconds, at least one, none below 0 (``0,50``)."""
    parts = [part.strip() for part in text.split(",") if part.strip()]
    if not parts or not all(part.isdigit() for part in parts):
        raise argparse.ArgumentTypeError(
            f"must be whole milliseconds, comma-separated (e.g. 0,50), not {text!r}"
        )
    return tuple(int(part) for part in parts)


def bench_stores(text: str) -> tuple[str, ...]:
    """Comma-separated store names out of ``BENCH_STORES``, at least one."""
    names = tuple(name.strip() for name in text.split(",") if name.strip())
    unknown = [name for name in names if name not in BENCH_STORES]
    if not names or unknown:
        raise argparse.ArgumentTypeError(
            f"must name one or more of {', '.join(BENCH_STORES)} (comma-separated), not {text!r}"
        )
    return names


def ssl_domain_count(text: str) -> int:
    """A whole number of domains from 1 to ``SSL_BENCH_MAX_DOMAINS``."""
    if not text.isdigit() or not 1 <= int(text) <= SSL_BENCH_MAX_DOMAINS:
        raise argparse.ArgumentTypeError(
            f"must be a whole number from 1 to {SSL_BENCH_MAX_DOMAINS}, not {text!r}: each "
            "domain has two certificates, and one ACME account may place 300 new orders in "
            "3 hours (Let's Encrypt's limit, which the rate guard keeps)"
        )
    return int(text)


def non_negative_rate(text: str) -> float:
    """A number per second, 0 or more."""
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value >= 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a number per second of 0 or more, not {text!r}")
    return value
