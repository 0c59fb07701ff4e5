"""The services not settled yet, from the services view: where the pipeline's sweep looks.

Implements ``handlers.pipeline_sweep.UnsettledServices``. Consumes a Database (the services
view's table); emits the ids of the services with a pending request (a plan change not applied
yet among them) or a status of ``provisioning`` / ``terminating``: those that may still wait for
a run. One query on the view's ``pending`` and ``status`` indexes, so a sweep costs the size of
the unsettled work, not of every service ever sold. The view may lag the store by a moment: a
service ordered since is found by the next sweep (its run has started long before, in the normal
case).
Synchronous: call it through ``asyncio.to_thread``.
"""

from __future__ import annotations

from ops.store.database import Database
from ops.views.view_store import ViewStore
from projections.services_view import SERVICES, ServicesView

_UNSETTLED = "pending IS NOT NULL OR status IN (?, ?)"


class ViewUnsettledServices:
    def __init__(self, db: Database, prefix: str = "hw_") -> None:
        self._store = ViewStore(db, [ServicesView()], prefix)

    def unsettled_services(self) -> list[str]:
        rows = self._store.select(
            SERVICES.name, _UNSETTLED, ("provisioning", "terminating"), "updated_at", None
        )
        return [row["service_id"] for row in rows]
