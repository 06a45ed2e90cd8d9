"""Suspended workflows kept in memory between wakes (parked greenlets), bounded per process.

Which Celery pools get them: ``prefork`` and ``solo`` always (one thread per process);
``threads`` when the wake lands on the thread that parked the run (else: full replay); ``gevent``
and ``eventlet`` never (their tasks already run in greenlets; the integration turns this off).
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict

from ..replay.engine import WorkflowExecution

__all__ = ["LiveExecutions"]


class LiveExecutions:
    def __init__(self, max_runs: int) -> None:
        self.max_runs = max_runs
        self._runs: OrderedDict[str, WorkflowExecution] = OrderedDict()
        self._parked_at: dict[str, float] = {}  # clock() of the last put
        self._lock = threading.Lock()
        #: The monotonic clock parking times are read from (a test may put its own).
        self.clock = time.monotonic

    def take(self, run_id: str) -> WorkflowExecution | None:
        with self._lock:
            self._parked_at.pop(run_id, None)
            return self._runs.pop(run_id, None)

    def take_parked(self, run_id: str) -> tuple[WorkflowExecution, float] | None:
        """The execution and when it was put, taken out (None when there is none)."""
        with self._lock:
            execution = self._runs.pop(run_id, None)
            since = self._parked_at.pop(run_id, 0.0)
            return None if execution is None else (execution, since)

    def put(
        self, run_id: str, execution: WorkflowExecution, parked_at: float | None = None
    ) -> None:
        """Keep ``execution``; ``parked_at`` (on :attr:`clock`): when the time of the log's last
        entry was current, if not now."""
        evicted: list[WorkflowExecution] = []
        with self._lock:
            self._runs[run_id] = execution
            self._parked_at[run_id] = self.clock() if parked_at is None else parked_at
            self._runs.move_to_end(run_id)
            while len(self._runs) > self.max_runs:
                old_id, old = self._runs.popitem(last=False)
                self._parked_at.pop(old_id, None)
                evicted.append(old)
        for old in evicted:
            old.abandon()

    def peek(self, run_id: str) -> WorkflowExecution | None:
        with self._lock:
            return self._runs.get(run_id)

    def drop(self, run_id: str) -> None:
        execution = self.take(run_id)
        if execution is not None:
            execution.abandon()

    def __len__(self) -> int:
        return len(self._runs)

    def reset(self) -> None:
        with self._lock:
            self._runs.clear()
            self._parked_at.clear()
