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
    """A daemon thread in the worker's main process: claims due timers and fires them."""

    def __init__(self, durable: Durable) -> None:
        self.durable = durable
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        # Build the runtime and poll once here, in the worker's main thread, before the prefork
        # pool forks (this step starts before Pool): the first poll imports modules lazily and
        # resolves Redis's address (importing encodings.idna). Done in the thread instead, a fork
        # landing meanwhile gives children a held import lock, and they hang on their first task.
        try:
            self.durable.runtime.timers.fire_due()
        except Exception:  # Redis away at start: the thread keeps trying
            log.exception("durable timer poll failed at worker start; the poller will retry")
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name="durable-timers", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _loop(self) -> None:
        runtime = self.durable.runtime
        interval = runtime.config.timer_poll_interval
        next_sweep = time.monotonic() + runtime.config.sweep_interval
        while not self._stop.is_set():
            if time.monotonic() >= next_sweep:
                next_sweep = time.monotonic() + runtime.config.sweep_interval
                try:
                    runtime.sweeper.sweep()
                except Exception:
                    log.exception("durable recovery sweep failed; next one in %ss",
                                  runtime.config.sweep_interval)
            try:
                fired = runtime.timers.fire_due()
            except Exception:  # Redis away for a moment: keep polling, never die
                log.exception("durable timer poll failed; retrying in %ss", interval)
                fired = 0
            if fired == 0:
                self._stop.wait(interval)


def install(app: Celery, durable: Durable) -> None:
    class DurableTimers(bootsteps.StartStopStep):
        """Fires durable timers (step retries, sleeps, timeouts) from this worker."""

        label = "durable-timers"

        def create(self, worker: Any) -> TimerPoller:
            # The blueprint starts, stops and terminates ``obj`` (terminate falls back to stop).
            return TimerPoller(durable)

    app.steps["worker"].add(DurableTimers)
