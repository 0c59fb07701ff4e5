"""The screens: the customer's live deploy splash and dashboard, and the staff console.

Served by the gateway as server-rendered HTML (``rendering``: one Jinja2 environment that
escapes everything a customer or a node can put into a page) with a little plain JavaScript
(``static/``) for live updates. Pages read views, through the gateway's ports; every button
goes through the same ledger calls, with the same validation, as the API's routes.

Where a page reads the store instead (``CommandLedger``), on purpose:

- a service the views have not caught up with yet (just ordered) is read from the store
  (``recorded_service``) by the client area's state and the console's service page;
- the client area's write check reads the store (``recorded_service``): a suspend or
  terminate recorded but not yet projected must already stop the customer's changes;
- the console's Events tab shows the store's raw history (``events_of``).

Modules:

- ``client_tokens``: the signed, expiring token that opens one service's client area.
- ``client_links``: ``POST /v1/services/{id}/client-link``, which mints one.
- ``client_area``: ``/client/{service_id}?token=…``, its live state and its actions;
  ``client_state``: what it shows, as one JSON-ready dict.
- ``console_session``: the staff console's sign-in, session cookie and CSRF check.
- ``console_pages``: ``/admin/…``.
- ``live_feed``: one poll of the views per process, fanned out to every open page;
  ``live_reads``: one page's reads, at once and once per change; ``event_stream``: how
  they travel (server-sent events).
- ``step_states``: a deploy step's shown state, for every timeline.
- ``screen_ports``: what the screens read and write through.
"""
