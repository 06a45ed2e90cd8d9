"""Time skipping for user tests: sleeps of a week and timeouts of days fire in milliseconds.

``WorkflowTestEnvironment`` runs an app's workflows synchronously on the memory store (the same
contract as Redis) with a virtual clock: entry times, ``now()`` and timer deadlines all follow
it, and :meth:`advance` moves it forward and fires whatever became due::

    def test_checkout_waits_a_week(durable):
        env = WorkflowTestEnvironment(durable)
        run = checkout.start("o-1")
        env.run_until_idle()
        durable.send_event("review:o-1", {"approved": True})
        env.advance(days=7)
        assert env.result(run) == {...}
"""

from __future__ import annotations

import time
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from ..store import MemoryEventStore
from .local import LocalDispatcher, LocalEnvironment

if TYPE_CHECKING:
    from ..integration.extension import Durable

__all__ = ["VirtualClock", "WorkflowTestEnvironment"]


class VirtualClock:
    """Seconds since the epoch that move only when told to."""

    def __init__(self, start: float | None = None) -> None:
        self.now = time.time() if start is None else start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError("time only moves forward")
        self.now += seconds


class WorkflowTestEnvironment(LocalEnvironment):
    """A synchronous environment whose clock you control (see the module docstring)."""

    def __init__(
        self,
        durable: Durable,
        *,
        start: float | None = None,
        dispatcher: LocalDispatcher | None = None,
        **settings: Any,
    ) -> None:
        self.clock = VirtualClock(start)
        super().__init__(
            durable, store=MemoryEventStore(clock=self.clock), dispatcher=dispatcher, **settings
        )

    def advance(self, delta: timedelta | float | None = None, **parts: float) -> int:
        """Move time forward (``advance(days=7)``, ``advance(30)`` seconds, or a timedelta)
        and run everything that became due; return the work items run."""
        seconds = delta.total_seconds() if isinstance(delta, timedelta) else float(delta or 0)
        seconds += timedelta(**parts).total_seconds()
        self.run_until_idle()
        self.clock.advance(seconds)
        return self.run_until_idle()
