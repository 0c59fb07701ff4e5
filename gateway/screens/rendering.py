"""HTML responses from the package's templates, and the package's static assets.

``page`` consumes a template name and its context and emits an ``HTMLResponse``. Every value
is escaped (autoescape is on for every template, whatever its name): a domain, a label, an
error text or an SSH log line is always text, never markup. Every page is sent with headers
that keep it to itself: no script, style or image from anywhere but this gateway, no referrer
(a client link carries its token in the URL), never cached, never sniffed, never framed.
Templates call ``static(name)`` for an asset's URL, ``step_state(task_state)`` for a
timeline step's shown state (``gateway.screens.step_states``) and ``when(text)`` for a view's
time.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined
from markupsafe import Markup
from starlette.responses import HTMLResponse
from starlette.routing import Mount
from starlette.staticfiles import StaticFiles

from gateway.screens.step_states import step_state

STATIC_PREFIX = "/static"
_ENVIRONMENT = Environment(
    loader=PackageLoader("gateway.screens", "templates"),
    autoescape=True,
    undefined=StrictUndefined,  # a value a template names but no page passes is a bug
    trim_blocks=True,
    lstrip_blocks=True,
)
_ENVIRONMENT.globals["static"] = lambda name: f"{STATIC_PREFIX}/{name}"
_ENVIRONMENT.globals["step_state"] = step_state  # one mapping for every timeline


def when(text: str | None) -> Markup:
    """A view's time text (ISO 8601, UTC) shown short, the full time kept in the attribute;
    nothing when there is none. A function, not a template macro: the task queue shows three
    per row, and 600 macro calls were a third of its page's time."""
    if not text:
        return Markup("")
    return Markup('<time datetime="{}">{}</time>').format(text, text[:19].replace("T", " "))


_ENVIRONMENT.globals["when"] = when

_CONTENT_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; form-action 'self'; base-uri 'none'; object-src 'none'"
)
PAGE_HEADERS = {
    # no page is shown in another site's frame (clickjacking)
    "Content-Security-Policy": _CONTENT_POLICY + "; frame-ancestors 'none'",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
}


def page(
    template: str,
    *,
    status_code: int = 200,
    headers: Mapping[str, str] | None = None,
    **context: Any,
) -> HTMLResponse:
    """The template rendered with ``context``, with ``PAGE_HEADERS`` (and ``headers``)."""
    html = _ENVIRONMENT.get_template(template).render(**context)
    sent = {**PAGE_HEADERS, **(headers or {})}
    return HTMLResponse(html, status_code=status_code, headers=sent)


def render(template: str, **context: Any) -> str:
    """The template rendered with ``context``: a fragment a page or a live update sends."""
    return _ENVIRONMENT.get_template(template).render(**context)


def static_assets() -> Mount:
    """``/static/…``: the stylesheet and scripts shipped in the package (no CDN)."""
    return Mount(
        STATIC_PREFIX, StaticFiles(packages=[("gateway.screens", "static")]), name="static"
    )
