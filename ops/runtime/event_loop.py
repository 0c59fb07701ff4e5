"""The event loop hostwright's processes run on: uvloop when it is installed, else asyncio's.

``run(main)`` consumes a coroutine and emits its result, as ``asyncio.run`` does. uvloop runs
the same code with less CPU per message, socket write and task (the deploy benchmark's
burst rate went up ~5% with it); ``HOSTWRIGHT_EVENT_LOOP=asyncio`` keeps asyncio's own loop.

Before the loop starts, everything made so far (the modules, the app, the templates: ~100,000
objects) is moved out of the garbage collector's sight with ``gc.freeze()``: none of it is
garbage, yet each full collection walked all of it, a pause of 70-120 ms that a console page
caught now and then (``bench screens``: the task queue's p99 was those pauses).
"""

from __future__ import annotations

import asyncio
import gc
import importlib
import os
from collections.abc import Coroutine
from typing import Any, TypeVar

from ops.settings import SettingsError

T = TypeVar("T")


LOOPS = ("uvloop", "asyncio")


def run(main: Coroutine[Any, Any, T]) -> T:
    """Runs ``main``; a ``HOSTWRIGHT_EVENT_LOOP`` other than uvloop or asyncio is a
    ``SettingsError`` (the CLI prints it and exits 2), raised before anything runs."""
    wanted = os.environ.get("HOSTWRIGHT_EVENT_LOOP", "uvloop")
    if wanted not in LOOPS:
        main.close()
        raise SettingsError(
            f"HOSTWRIGHT_EVENT_LOOP must be one of {', '.join(LOOPS)}, not {wanted!r}"
        )
    gc.collect()  # what is garbage already goes first: frozen, it would stay for good
    gc.freeze()
    if wanted == "uvloop":
        try:
            uvloop = importlib.import_module("uvloop")
        except ImportError:
            pass
        else:
            result: T = uvloop.run(main)
            return result
    return asyncio.run(main)
