"""A synchronous environment for fast tests: the memory store and an in-process dispatcher.

Nothing runs until :meth:`LocalEnvironment.run_until_idle`, which executes queued orchestrator
passes and step attempts one at a time and fires due timers, so a test controls every
interleaving. Workflows and steps are the app's own (``@durable.workflow`` / ``@durable.step``).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from ..codec import Codec
from ..config import DurableConfig
from ..runtime.core import Runtime
from ..store import EventStore, MemoryEventStore
from ..workflow.handle import RunHandle
from ..workflow.step import StepDefinition

if TYPE_CHECKING:
    from ..integration.extension import Durable

__all__ = ["LocalDispatcher", "LocalEnvironment"]

WorkItem = tuple[Any, ...]


class LocalDispatcher:
    """Queues what Celery would send; ``consumes`` decides what ``auto`` may inline."""

    #: Step messages carry their input, as Celery's do (see CeleryDispatcher.send_step).
    carries_input = True

    def __init__(self, consumes: Callable[[StepDefinition[Any, Any]], bool] | None = None) -> None:
        self.queue: deque[WorkItem] = deque()
        self._consumes = consumes or (lambda step: True)
        self.sent_steps = 0
        self.wakes = 0

    def send_step(
        self,
        step: StepDefinition[Any, Any],
        run_id: str,
        cid: str,
        entry_id: str,
        attempt: int,
        queue: str | None = None,
        payload: bytes | None = None,
        identity: str | None = None,
    ) -> None:
        self.sent_steps += 1
        self.queue.append(("step", step.name, run_id, cid, entry_id, attempt, payload, identity))

    def wake(self, run_id: str, countdown: float | None = None) -> None:
        self.wakes += 1
        self.queue.append(("wake", run_id))

    def consumes(self, step: StepDefinition[Any, Any]) -> bool:
        return self._consumes(step)


class LocalEnvironment:
    """Runs a Durable app's workflows synchronously on a private store."""

    def __init__(
        self,
        durable: Durable,
        *,
        store: EventStore | None = None,
        dispatcher: LocalDispatcher | None = None,
        **settings: Any,
    ) -> None:
        # Each wake is its own queued item here (no one-hop continuation inside a step), so a
        # test can run passes and step attempts in any order it likes; pass one_hop=True to get
        # the production path instead.
        settings.setdefault("one_hop", False)
        base = DurableConfig.from_mapping(durable.app.conf)
        config = replace(base, **settings) if settings else base
        config.validate()
        self.durable = durable
        self.store = store if store is not None else MemoryEventStore()
        self.dispatcher = dispatcher or LocalDispatcher()
        codec = Codec(
            config.encryption_keys,
            compression_threshold=config.compression_threshold,
            require_encryption=config.require_encryption,
            registry=durable.types,
        )
        self.runtime = Runtime(config, self.store, codec, durable.registry, self.dispatcher)
        self.passes = 0
        self.step_attempts = 0
        durable._runtime = self.runtime  # this environment now serves the app's workflows

    def run_until_idle(self, max_items: int = 100_000) -> int:
        """Run queued work (and due timers) until nothing is left; return items run."""
        done = 0
        while done < max_items:
            if not self.dispatcher.queue and not self.runtime.timers.fire_due():
                return done
            while self.dispatcher.queue and done < max_items:
                self._run(self.dispatcher.queue.popleft())
                done += 1
        raise RuntimeError(f"still busy after {max_items} work items: a workflow that never ends?")

    def redeliver(self, item: WorkItem) -> None:
        """Queue a step message again, flagged as a redelivery (as brokers flag one)."""
        self.dispatcher.queue.append((*item, True))

    def step_once(self) -> bool:
        """Run the next queued item only; False when the queue is empty."""
        if not self.dispatcher.queue:
            return False
        self._run(self.dispatcher.queue.popleft())
        return True

    def _run(self, item: WorkItem) -> None:
        if item[0] == "wake":
            self.passes += 1
            report = self.runtime.orchestrator.run(item[1])
            if report.status == "busy":
                self.dispatcher.queue.append(item)
        else:
            _, name, run_id, cid, entry_id, attempt, payload, identity, *flags = item
            self.step_attempts += 1
            self.runtime.steps.execute(
                name,
                run_id,
                cid,
                entry_id,
                attempt,
                payload=payload,
                redelivered=bool(flags),
                identity=identity,
            )

    def result(self, handle: RunHandle) -> Any:
        """Run until idle, then return the run's result (or raise its error)."""
        self.run_until_idle()
        return handle.result(timeout=0)
