"""Which views replay together: the views split into groups of about equal cost, one group
per worker process.

``view_groups`` consumes the views and how many workers there may be; it emits at most that
many non-empty groups, heaviest view first into the lightest group, each group in catalogue
order. A worker's time is its read of the log plus its views' decoding, folding and
comparing, so groups of equal cost finish together.
"""

from __future__ import annotations

from collections.abc import Sequence

from projections.view import View

# A view's replay cost, about the CPU seconds it took replayed alone on ``hostwright bench
# replay``'s history (53,004 events, SQLite). Two workers then get {services, timeline} and
# {task_queue, oplog}: 0.90 and 0.74 s of CPU measured as pairs, the most even of the three
# splits. A view not listed counts as the heaviest.
REPLAY_COST: dict[str, float] = {
    "services": 0.5,
    "oplog": 0.1,
    "task_queue": 0.6,
    "timeline": 0.4,
}

UNLISTED = max(REPLAY_COST.values())


def view_groups(views: Sequence[View], workers: int) -> list[list[View]]:
    """``views`` in at most ``workers`` groups of about equal replay cost."""
    count = max(1, min(workers, len(views)))
    groups: list[list[View]] = [[] for _ in range(count)]
    costs = [0.0] * count
    heaviest_first = sorted(views, key=lambda view: -REPLAY_COST.get(view.name, UNLISTED))
    for view in heaviest_first:
        lightest = costs.index(min(costs))
        groups[lightest].append(view)
        costs[lightest] += REPLAY_COST.get(view.name, UNLISTED)
    order = {view.name: index for index, view in enumerate(views)}
    return [sorted(group, key=lambda view: order[view.name]) for group in groups if group]
