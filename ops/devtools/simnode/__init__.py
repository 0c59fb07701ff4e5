"""A simulated HestiaCP node: SSH with Hestia's ``v-*`` commands, DNS, HTTP(S), fault injection.

``SimNode`` runs one in-process; ``run_simnode(argv)`` is ``hostwright simnode``;
``read_command_log``/``read_stats`` read what a node recorded.
"""

from __future__ import annotations

from ops.devtools.simnode.faults import Faults
from ops.devtools.simnode.journal import read_command_log, read_stats
from ops.devtools.simnode.main import SimNode, run_simnode
from ops.devtools.simnode.state import read_state_json

__all__ = ["Faults", "SimNode", "read_command_log", "read_state_json", "read_stats", "run_simnode"]
