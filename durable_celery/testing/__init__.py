"""Test support: a synchronous environment with time skipping, the embedded Redis, a replayer.

* :class:`WorkflowTestEnvironment` — for users' own pytest suites: runs workflows in-process on
  the memory store, with ``advance(days=7)`` to fire sleeps and timeouts at once.
* :class:`LocalEnvironment` — the same without a virtual clock.
* :class:`EmbeddedRedis` / :func:`run_worker` — fakeredis over TCP and a real in-process worker.
* :func:`replay_history` — check that saved histories still replay with the current code.
"""

from ..runtime.replayer import ReplayReport, replay_history
from .embedded import EmbeddedRedis, run_worker
from .local import LocalDispatcher, LocalEnvironment
from .timeskip import VirtualClock, WorkflowTestEnvironment

__all__ = [
    "EmbeddedRedis",
    "LocalDispatcher",
    "LocalEnvironment",
    "ReplayReport",
    "VirtualClock",
    "WorkflowTestEnvironment",
    "replay_history",
    "run_worker",
]
