"""Suspended workflows kept in memory between wakes (parked greenlets), bounded per process.

Which Celery pools get them: ``prefork`` and ``solo`` always (one thread per process);
``threads`` when the wake lands on the thread that parked the run (else: full replay); ``gevent``
and ``eventlet`` never (their tasks already run in greenlets; the integration turns this off).
"""

from __future__ import annotations

import threading
from collections import OrderedDict

from ..replay.engine import WorkflowExecution

__all__ = ["LiveExecutions"]


class LiveExecutions:
    def __init__(self, max_runs: int) -> None:
        self.max_runs = max_runs
        self._runs: OrderedDict[str, WorkflowExecution] = OrderedDict()
        self._lock = threading.Lock()

    def take(self, run_id: str) -> WorkflowExecution | None:
        with self._lock:
            return self._runs.pop(run_id, None)

    def put(self, run_id: str, execution: WorkflowExecution) -> None:
        evicted: list[WorkflowExecution] = []
        with self._lock:
            self._runs[run_id] = execution
            self._runs.move_to_end(run_id)
            while len(self._runs) > self.max_runs:
                evicted.append(self._runs.popitem(last=False)[1])
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
