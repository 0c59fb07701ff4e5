"""The screens: the customer's live deploy splash and dashboard, and the staff console.

Served by the gateway as server-rendered HTML (``rendering``: one Jinja2 environment that
escapes everything a customer or a node can put into a page) with a little plain JavaScript
(``static/``) for live updates. Pages read only views, through the gateway's ports; every
button goes through the same ledger calls, with the same validation, as the API's routes.

- ``client_tokens``: the signed, expiring token that opens one service's client area.
- ``client_area``: ``/client/{service_id}?token=…``, its live state and its actions.
- ``console_session``: the staff console's sign-in, session cookie and CSRF check.
- ``console_pages``: ``/admin/…``.
- ``live_feed``: one poll of the views per process, fanned out to every open page.
"""
