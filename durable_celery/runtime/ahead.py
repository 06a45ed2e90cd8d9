"""Speculative continuation: a step's outcome, what the run does next, and the pass's end in one
round trip.

A worker that ran a dispatched step and holds the run's suspended workflow (it ran the previous
pass) continues the workflow with the outcome *before* recording it. When the workflow then only
sends steps, one script (``record_ahead``) records the outcome and those steps' scheduling and
ends the pass; otherwise ``PassHost.begin`` records the outcome and takes the lease before
anything else is written, and the pass goes on as any. Before, a dispatched step cost two round
trips after it ran: ``record_and_begin``, then ``append_and_finish``.

This departs from DESIGN.md section 2.5 (an outcome is appended, then the run is woken and
replays): the workflow sees the outcome first, though nothing else is written before it is
recorded, and the store refuses, writing nothing, unless the run is exactly as the worker saw it.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..errors import LeaseLost
from ..replay.engine import WorkflowExecution
from ..replay.events import Event, NewEvent
from ..store.base import AheadResult, WaitFor
from ..store.entries import as_recorded, following_ids

if TYPE_CHECKING:
    from .core import Runtime
    from .host import PassStats
    from .orchestrator import OrchestrationReport, Orchestrator

__all__ = ["Ahead", "AheadHost", "AheadRefused", "SpeculativeContinuation", "ahead_id"]

log = logging.getLogger("durable_celery.orchestrator")


@dataclass(frozen=True)
class Ahead:
    """An outcome a pass continues its workflow with before it is recorded: ``entry`` carries
    the id it will be recorded at (see ``Orchestrator.run_ahead``)."""

    entry: Event
    key: str
    identity: str | None
    after: str
    ttl_ms: int
    #: When the entry's time was estimated (on ``LiveExecutions.clock``)
    estimated_at: float


class AheadRefused(LeaseLost):
    """The run was not as the pass saw it when it went ahead: nothing was recorded, and the
    workflow, which has seen an outcome that is not in the log, must be dropped. A LeaseLost,
    so it stops the pass from inside the workflow as a lost lease does."""


class AheadHost:
    """What a pass host does for an outcome gone ahead with (mixed into ``PassHost``)."""

    runtime: Runtime
    run_id: str
    token: str
    stats: PassStats
    ahead: Ahead | None
    ahead_recorded: bool
    clock_anchor: float | None
    finished: bool
    _caught_up: bool

    def begin(self) -> None:
        """Record the outcome this pass went ahead with, and take the lease, unless done."""
        ahead, self.ahead = self.ahead, None
        if ahead is None:
            return
        self._store_ahead(ahead)
        self._absorb_held(ahead.after, [ahead.entry])

    def _store_ahead(
        self, ahead: Ahead, scheduled: list[Event] | None = None, waitfor: WaitFor | None = None
    ) -> AheadResult:
        """``record_ahead`` (begin a pass, or with ``scheduled`` finish it); AheadRefused when
        the store refused, having written nothing."""
        with self.runtime.clock(self.stats, "append_ms"):
            result = self.runtime.store.record_ahead(
                self.run_id,
                ahead.key,
                ahead.entry,
                self.token,
                ahead.ttl_ms,
                ahead.after,
                identity=ahead.identity,
                scheduled=scheduled or (),
                waitfor=waitfor,
            )
        self.stats.appends += 1
        if result.status == "refused":
            raise AheadRefused(f"run {self.run_id}: {result.reason}")
        self.ahead_recorded = True
        return result

    def _absorb_held(self, after: str, entries: list[Event]) -> None:
        """Take what this pass recorded into the event cache, the lease held. Nothing else can
        have moved the cache (a pass needs the lease); if it did anyway, stop the pass: the
        wake flag is set, so the recovery sweep drives the run again."""
        if not self.runtime.events.absorb(self.run_id, after, entries):
            self.runtime.store.release_lease(self.run_id, self.token)
            raise LeaseLost(f"run {self.run_id}: the event cache moved during a pass")
        self.stats.entries_new += len(entries)
        self._caught_up = True

    def _record_ahead(self, events: list[NewEvent], waitfor: WaitFor | None) -> list[Event]:
        """The outcome gone ahead with, the steps just sent, and the pass's end: one round
        trip. The steps' entries take the ids right after the outcome's."""
        rt = self.runtime
        ahead, self.ahead = self.ahead, None
        assert ahead is not None
        ids = following_ids(ahead.entry.entry_id, len(events))
        scheduled = [as_recorded(e, i) for e, i in zip(events, ids, strict=True)]
        result = self._store_ahead(ahead, scheduled, waitfor)
        own = [ahead.entry, *scheduled]
        if result.status == "finished":
            # As _append_and_finish: the lease is free, so another pass may already be reading
            # on; if the cache moved, it is left to that pass.
            self.finished = self._caught_up = True
            self.clock_anchor = ahead.estimated_at
            if rt.events.absorb(self.run_id, ahead.after, own):
                self.stats.entries_new += len(own)
            return scheduled
        self._absorb_held(ahead.after, [*own, *result.promoted])  # continued: lease held
        return [*scheduled, *result.promoted]


class SpeculativeContinuation:
    """The orchestrator's way to continue a run ahead of its log (``Orchestrator.run_ahead``)."""

    def __init__(self, orchestrator: Orchestrator) -> None:
        self.orchestrator = orchestrator

    def run(
        self, run_id: str, key: str, outcome: NewEvent, identity: str | None
    ) -> OrchestrationReport | None:
        """Continue the run with a step's outcome before recording it (speculative
        continuation), then record both in one round trip. None when this process cannot, or
        the run moved meanwhile: nothing was recorded, and the caller records the outcome the
        usual way (``record_and_begin``).

        Only for a workflow parked here at the tail of the log as this process knows it,
        waiting on this outcome alone. The outcome gets the entry id it will be recorded at
        beforehand (the workflow may read the log's time from it): the time of the previous
        entry plus the time since, on this process's monotonic clock (from when that entry was
        written, or from when its time was estimated so, which keeps estimates from drifting
        along a run). When the workflow then only sends steps, the outcome, their scheduling and the
        pass's end are one script (``record_ahead``), where a step's outcome and the next
        step's scheduling used to be two round trips (``record_and_begin``, then
        ``append_and_finish``). Anything else records the outcome and takes the lease first
        (``PassHost.begin``) and goes on as a pass does. The script refuses, writing nothing,
        unless the log, the lease and the wake flag are as this process saw them; the
        workflow, which has seen an outcome that is not in the log, is then dropped, and steps
        it sent are sent again by the replay (same cids; each outcome is still recorded once).
        """
        # Here, not at the top: both modules import this one.
        from .host import PassHost
        from .orchestrator import PassClock

        rt = self.orchestrator.rt
        if not rt.config.speculative_continuation:
            return None
        parked = rt.live.take_parked(run_id)
        if parked is None:
            return None
        execution, parked_at = parked
        history = rt.events.get(run_id)
        if not history or not self._may_go_ahead(run_id, execution, history, outcome.cid):
            rt.live.put(run_id, execution, parked_at)
            return None
        after = history[-1].entry_id
        local_now = rt.store.local_now_ms  # the memory store's, maybe a test's virtual clock
        # Whole milliseconds since the last entry's time was current; the moment the estimate
        # stands for (the rest is carried to the next estimate, so none drifts).
        elapsed_ms = max(math.floor((rt.live.clock() - parked_at) * 1000 + 1e-6), 0)
        estimated_at = parked_at + elapsed_ms / 1000
        now_ms = int(after.partition("-")[0]) + elapsed_ms
        if local_now is not None:
            now_ms = local_now()
        entry = as_recorded(outcome, ahead_id(after, now_ms))
        token, ttl_ms = self.orchestrator.new_token()
        clock = PassClock(rt)
        ahead = Ahead(entry, key, identity, after, ttl_ms, estimated_at)
        host = PassHost(rt, run_id, token, clock.stats, ahead)
        host.context = execution.ctx
        clock.stats.extra["workflow"] = execution.ctx.workflow
        try:
            before = (execution.ctx.replayed_calls, execution.ctx.new_calls)
            with rt.clock(clock.stats, "replay_ms"):
                result = execution.resume(host, [entry])
            self.orchestrator.count_calls(execution, clock.stats, before)
            if result.status != "fault":
                host.begin()  # ended or suspended without writing: the outcome goes first
        except Exception:
            if not host.ahead_recorded:
                self._dropped(run_id, execution)
                return None
            execution.abandon()
            rt.store.release_lease(run_id, token)
            raise
        if not host.ahead_recorded:  # refused, or a fault before anything was written
            self._dropped(run_id, execution)
            return None
        return self.orchestrator.passes(run_id, token, clock, first=(host, result, execution))

    def _may_go_ahead(
        self, run_id: str, execution: WorkflowExecution, history: list[Event], cid: str
    ) -> bool:
        ctx = self.orchestrator.rt.registry.workflows.get(execution.ctx.workflow)
        waiting = execution.ctx.waiting
        return (
            execution.can_resume()
            and waiting is not None
            and tuple(waiting[1]) == (cid,)
            and not execution.ctx.recorded_outcome(cid)
            and len(execution.ctx.history) == len(history)
            and execution.ctx.last_entry_id == history[-1].entry_id
            and getattr(ctx, "fn", None) is execution.fn
            and self.orchestrator.run_state(run_id, history) == "running"
        )

    def _dropped(self, run_id: str, execution: WorkflowExecution) -> None:
        """Nothing was recorded: forget what the workflow saw ahead of the log."""
        execution.abandon()
        # Values decoded under the id it went ahead with.
        self.orchestrator.rt.hydration.drop_run(run_id)
        log.debug("run %s: outcome not recorded ahead; recording it the usual way", run_id)


def ahead_id(after: str, now_ms: int) -> str:
    """The id of an entry written at ``now_ms`` after ``after``: above it, as a stream id must
    be (within its millisecond when the clock has not moved on)."""
    ms, _, seq = after.partition("-")
    return f"{now_ms}-0" if now_ms > int(ms) else f"{ms}-{int(seq or 0) + 1}"
