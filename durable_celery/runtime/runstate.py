"""A run's state as its log tells it, kept per run and advanced by new entries only."""

from __future__ import annotations

from ..replay import events as ev
from ..replay.events import Event

__all__ = ["RunStates", "attached_children", "state_of"]


def attached_children(history: list[Event]) -> list[str]:
    finished = {e.cid for e in history if e.kind == ev.CHILD_FINISHED}
    return [
        str(e.meta["child"])
        for e in history
        if e.kind == ev.CHILD_STARTED and not e.meta.get("detached") and e.cid not in finished
    ]


def state_of(history: list[Event], state: str = "running") -> str:
    """running | blocked | cancelling | completed | failed | cancelled, from the log alone:
    the state after ``history``, given the ``state`` before it (so it can be fed deltas)."""
    for event in history:
        kind = event.kind
        if kind in ev.TERMINAL_KINDS:
            return {ev.RUN_COMPLETED: "completed", ev.RUN_FAILED: "failed"}.get(kind, "cancelled")
        if state == "cancelling":
            continue  # only the final entry counts now (run_cancelled may already follow)
        if kind == ev.RUN_BLOCKED:
            state = "blocked"
        elif kind == ev.RUN_RESUMED:
            state = "running"
        elif kind == ev.RUN_CANCEL_REQUESTED:
            state = "cancelling"
    return state


class RunStates:
    """The state of each run's cached log, advanced by the new entries only: scanning the whole
    log on every pass would make a long sequential run cost O(N^2)."""

    def __init__(self, max_runs: int) -> None:
        self.max_runs = max_runs
        self._known: dict[str, tuple[int, int, str]] = {}  # run -> (id(list), scanned, state)

    def of(self, run_id: str, history: list[Event]) -> str:
        known = self._known.get(run_id)
        if known is None or known[0] != id(history) or known[1] > len(history):
            known = (id(history), 0, "running")  # a new list: the cache was refilled
        state = state_of(history[known[1] :], known[2])
        self._known[run_id] = (id(history), len(history), state)
        if len(self._known) > self.max_runs:
            self._known.pop(next(iter(self._known)))
        return state

    def forget(self, run_id: str) -> None:
        self._known.pop(run_id, None)
