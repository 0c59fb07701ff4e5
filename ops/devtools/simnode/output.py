"""How ``v-list-*`` commands print: ``json`` (what hostwright reads), ``plain``, ``csv``, ``shell``.

``render`` consumes the objects as ``{name: {KEY: value}}`` in Hestia's key order and emits the
text. JSON is Hestia's shape (an object keyed by the object's name, every value a string); the
other formats carry the same fields in the same order, tab-, comma- or space-separated.
"""

from __future__ import annotations

import json

from ops.devtools.simnode.validation import list_format

Objects = dict[str, dict[str, str]]


def render(objects: Objects, fmt: str, *, name_key: str = "NAME") -> str:
    """Emit ``objects`` in ``fmt`` (validated like ``is_format_valid 'format'``)."""
    list_format(fmt)
    if fmt == "json":
        return json.dumps(objects, indent=4) + "\n"
    rows = [[name, *fields.values()] for name, fields in objects.items()]
    header = [name_key, *next(iter(objects.values()), {}).keys()]
    if fmt == "plain":
        return "".join("\t".join(row) + "\n" for row in rows)
    if fmt == "csv":
        lines = [",".join(header)] + [",".join(_csv_cell(c) for c in row) for row in rows]
        return "\n".join(lines) + "\n"
    if len(objects) == 1:
        ((name, fields),) = objects.items()
        pairs = [(name_key, name), *fields.items()]
        return "".join(f"{key + ':':<16}{value}\n" for key, value in pairs)
    return "".join(" ".join(row) + "\n" for row in [header, *rows])


def _csv_cell(value: str) -> str:
    return f'"{value}"' if ("," in value or " " in value) else value
