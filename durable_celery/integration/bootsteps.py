"""A worker bootstep that fires durable timers and runs the recovery sweep.

Every worker may run it: each timer fires once (claimed, acted on, then removed), and a sweep
that re-drives a run twice only costs an extra pass.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import TYPE_CHECKING, Any

from celery import bootsteps

if TYPE_CHECKING:
    from celery import Celery

    from .extension import Durable

__all__ = ["install", "TimerPoller"]

log = logging.getLogger("durable_celery.timers")


class TimerPoller:
    """Claims due timers and fires them; runs the recovery sweep now and then.

    Where the worker has an event loop (the hub: prefork and other event-loop pools) the poller
    is a repeating hub timer in the main thread, so no thread of ours exists when the pool forks
    (a fork while a thread holds an import, logging or connection lock leaves the child hung).
    Pools without a hub (solo, threads) never fork: there it is a daemon thread.
    """

    def __init__(self, durable: Durable) -> None:
        self.durable = durable
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._tref: Any = None
        self._next_sweep = 0.0

    def start(self, hub: Any = None) -> None:
        runtime = self.durable.runtime  # built here, in the main thread, before any fork
        self._next_sweep = time.monotonic() + runtime.config.sweep_interval
        self._stop.clear()
        if hub is not None:
            self._tref = hub.call_repeatedly(runtime.config.timer_poll_interval, self.tick)
            return
        self._thread = threading.Thread(target=self._loop, name="durable-timers", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._tref is not None:
            self._tref.cancel()
            self._tref = None
        if self._thread is not None:
            self._thread.join(timeout=5)

    def tick(self) -> int:
        """One round: the sweep when due, then one batch of due timers. Never raises."""
        runtime = self.durable.runtime
        if time.monotonic() >= self._next_sweep:
            self._next_sweep = time.monotonic() + runtime.config.sweep_interval
            try:
                runtime.sweeper.sweep()
            except Exception:
                log.exception(
                    "durable recovery sweep failed; next one in %ss", runtime.config.sweep_interval
                )
        try:
            return runtime.timers.fire_due()
        except Exception:  # Redis away for a moment: keep polling, never die
            log.exception("durable timer poll failed; retrying")
            return 0

    def _loop(self) -> None:
        interval = self.durable.runtime.config.timer_poll_interval
        while not self._stop.is_set():
            if self.tick() == 0:
                self._stop.wait(interval)


def install(app: Celery, durable: Durable) -> None:
    class DurableTimers(bootsteps.StartStopStep):  # type: ignore[misc]  # celery is untyped
        """Fires durable timers (step retries, sleeps, timeouts) from this worker."""

        label = "durable-timers"
        requires = ("celery.worker.components:Hub",)

        def create(self, worker: Any) -> TimerPoller:
            self.poller = TimerPoller(durable)
            return self.poller

        def start(self, worker: Any) -> None:
            self.poller.start(getattr(worker, "hub", None))

        def stop(self, worker: Any) -> None:
            self.poller.stop()

        def terminate(self, worker: Any) -> None:
            self.poller.stop()

    app.steps["worker"].add(DurableTimers)
