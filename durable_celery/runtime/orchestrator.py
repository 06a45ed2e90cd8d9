"""One orchestration of a run: lease, read the delta, replay (or resume), record, finish.

A pass loops while entries keep arriving (``finish_pass`` refuses to finish when the log grew
since it was read), so wakes that land during a pass cost no extra broker hop; at most one pass
per run is queued or running at a time (the wake flag).
"""

from __future__ import annotations

import contextlib
import logging
import secrets
import time
from dataclasses import dataclass
from typing import Any

from ..codec import Place
from ..errors import DurableError, EncodingError, LeaseLost
from ..replay import events as ev
from ..replay.engine import PassResult, WorkflowExecution
from ..replay.events import Event, NewEvent
from ..store.base import PassStart, WaitFor
from .ahead import SpeculativeContinuation
from .core import Runtime
from .host import PassHost, PassStats, pending_waitfor
from .runstate import RunStates, attached_children

__all__ = ["Orchestrator", "OrchestrationReport"]

timing_log = logging.getLogger("durable_celery.timing")
log = logging.getLogger("durable_celery.orchestrator")


@dataclass
class OrchestrationReport:
    run_id: str
    status: str  # the run's status after the pass, or "busy" when another pass holds the lease
    passes: int = 0
    retry_after: float = 0.0
    #: What the suspended workflow waits for (recorded by finish_pass).
    waitfor: WaitFor | None = None
    #: The pass's last append finished it (no finish_pass needed).
    finished: bool = False


class Orchestrator:
    def __init__(self, runtime: Runtime) -> None:
        self.rt = runtime
        self._retention_ms = int(runtime.config.retention * 1000)
        self._states = RunStates(runtime.config.event_cache_runs)
        self._ahead = SpeculativeContinuation(self)

    def new_token(self) -> tuple[str, int]:
        """A fresh lease token and the lease's ttl in ms."""
        return secrets.token_hex(8), int(self.rt.config.lease_timeout * 1000)

    def run(self, run_id: str) -> OrchestrationReport:
        token, ttl_ms = self.new_token()
        after = self.rt.events.last_id(run_id)
        # One round trip: the lease, the outbox of an interrupted pass, and the new entries.
        start = self.rt.store.begin_pass(run_id, token, ttl_ms, after)
        return self.run_started(run_id, token, after, start)

    def run_started(
        self, run_id: str, token: str, after: str | None, start: PassStart
    ) -> OrchestrationReport:
        """Orchestrate with a lease ``begin_pass`` (or ``record_and_begin``) took for ``token``,
        having read the entries after ``after``."""
        rt = self.rt
        if not start.acquired:
            return OrchestrationReport(run_id, "busy", retry_after=max(start.lease_ms, 50) / 1000)
        # The first pass must see begin_pass's entries as new (a parked run resumes with them).
        carried = start.entries if rt.events.absorb(run_id, after, start.entries) else None
        return self.passes(run_id, token, PassClock(rt), carried=carried, outbox=start.outbox)

    def run_state(self, run_id: str, history: list[Event]) -> str:
        """running | blocked | cancelling | completed | failed | cancelled, for ``history``."""
        return self._states.of(run_id, history)

    def run_ahead(
        self, run_id: str, key: str, outcome: NewEvent, identity: str | None
    ) -> OrchestrationReport | None:
        """Continue the run with a step's outcome before recording it (see
        :class:`.ahead.SpeculativeContinuation`); None: record it the usual way."""
        return self._ahead.run(run_id, key, outcome, identity)

    def passes(
        self,
        run_id: str,
        token: str,
        clock: PassClock,
        *,
        carried: list[Event] | None = None,
        outbox: list[str] | None = None,
        first: tuple[PassHost, PassResult, WorkflowExecution] | None = None,
    ) -> OrchestrationReport:
        """Passes, holding the lease for ``token``, until one sees the whole log. ``first``: a
        pass already driven (``run_ahead``), to be recorded and finished like any."""
        rt = self.rt
        report = OrchestrationReport(run_id, "running")
        stats = clock.stats
        warm = False
        try:
            if outbox:
                self._resend_outbox(run_id, outbox)
            while True:
                report.passes += 1
                if first is not None:
                    host, result, execution = first
                    first = None
                    history = rt.events.get(run_id) or []
                    report.status = self._settle(
                        run_id, token, host, result, execution, history, report
                    )
                    stats.entries_total = len(history)
                    warm_pass = True
                else:
                    report.status, warm_pass = self._one_pass(run_id, token, stats, carried, report)
                carried = None
                warm = warm or warm_pass
                if report.finished:
                    break
                last = rt.events.last_id(run_id) or "0-0"
                if rt.store.finish_pass(run_id, token, last, report.waitfor):
                    break
        except LeaseLost:
            log.info("run %s: lease lost to another orchestrator; this pass stops", run_id)
            rt.live.drop(run_id)
            report.status = "lease-lost"
        except BaseException:
            rt.live.drop(run_id)
            rt.store.release_lease(run_id, token)
            raise
        stats.extra["cache_hits"] = rt.hydration.hits - clock.hits
        stats.extra["cache_misses"] = rt.hydration.misses - clock.misses
        self._log_timing(run_id, stats, clock.started, warm, report)
        if report.status in ("completed", "failed", "cancelled"):
            rt.forget_run(run_id)
            self._states.forget(run_id)
        return report

    # -- one pass ---------------------------------------------------------------------------------
    def _one_pass(
        self,
        run_id: str,
        token: str,
        stats: PassStats,
        carried: list[Event] | None,
        report: OrchestrationReport,
    ) -> tuple[str, bool]:
        """``carried``: the entries begin_pass just read (first pass), else None: read now."""
        rt = self.rt
        history = rt.events.get(run_id) if carried is not None else None
        if history is not None and carried is not None:
            new = carried
        else:
            with rt.clock(stats, "read_ms"):
                history, new = rt.events.refresh(run_id)
        stats.entries_new += len(new)
        stats.extra.setdefault("workflow", history[0].meta.get("workflow") if history else "?")
        state = self._states.of(run_id, history)
        warm = False
        if state == "running":
            host = PassHost(rt, run_id, token, stats)
            result, warm, execution = self._drive(run_id, host, history, new, stats)
            state = self._settle(run_id, token, host, result, execution, history, report)
        elif state == "cancelling":
            rt.live.drop(run_id)
            cancelled = NewEvent(ev.RUN_CANCELLED, "", {})
            self._append_final(run_id, token, cancelled, "cancelled", stats)
            self._finished(run_id, cancelled, history)
            state = "cancelled"
        stats.entries_total = len(history)  # the cache's own list: it includes this pass's appends
        return state, warm

    def _settle(
        self,
        run_id: str,
        token: str,
        host: PassHost,
        result: PassResult,
        execution: WorkflowExecution | None,
        history: list[Event],
        report: OrchestrationReport,
    ) -> str:
        """Record how a driven pass ended; keep the workflow if it parked."""
        state = self._record(run_id, token, result, history, host.stats)
        report.waitfor = None
        report.finished = host.finished
        if result.status == "suspended" and execution is not None:
            report.waitfor = self._waitfor(execution)
            if execution.parked:
                self.rt.live.put(run_id, execution, host.clock_anchor)
        return state

    def _drive(
        self, run_id: str, host: PassHost, history: list[Event], new: list[Event], stats: PassStats
    ) -> tuple[PassResult, bool, WorkflowExecution | None]:
        rt = self.rt
        execution = rt.live.take(run_id)
        if execution is not None:
            host.context = execution.ctx
        seen = len(history) - len(new)
        if (
            execution is not None
            and execution.can_resume()
            and len(execution.ctx.history) == seen
            and execution.ctx.last_entry_id == (history[seen - 1].entry_id if seen else None)
            # Code registered again since it parked (a re-import): replay with the code of now.
            and getattr(rt.registry.workflows.get(execution.ctx.workflow), "fn", None)
            is execution.fn
        ):
            before = (execution.ctx.replayed_calls, execution.ctx.new_calls)
            with rt.clock(stats, "replay_ms"):
                result = execution.resume(host, new)
            self.count_calls(execution, stats, before)
            return result, True, execution
        if execution is not None:
            execution.abandon()  # the log moved in a way it did not see: replay from the top
        # An unknown workflow or an undecodable input is this process's problem (a deploy or a
        # key missing here), not the run's: it raises, nothing is written, and the run is driven
        # again later (the recovery sweep) until a worker that can run it picks it up.
        execution = self._new_execution(run_id, host, history)
        host.context = execution.ctx
        with rt.clock(stats, "replay_ms"):
            result = execution.start()
        self.count_calls(execution, stats, (0, 0))
        return result, False, execution

    def _new_execution(
        self, run_id: str, host: PassHost, history: list[Event]
    ) -> WorkflowExecution:
        rt = self.rt
        started = history[0]
        workflow = rt.registry.workflow(str(started.meta.get("workflow")))
        if started.meta.get("code") != workflow.code_hash:
            log.info(
                "run %s: replaying with changed code for workflow %s (%s -> %s)",
                run_id,
                workflow.name,
                started.meta.get("code"),
                workflow.code_hash,
            )
        inputs = rt.codec.decode(started.payload or b"", Place(run_id, ev.RUN_STARTED, ""))
        return WorkflowExecution(
            workflow.fn,
            inputs["args"],
            inputs["kwargs"],
            run_id=run_id,
            workflow=workflow.name,
            history=history,
            host=host,
            live=rt.live_enabled,
        )

    @staticmethod
    def count_calls(
        execution: WorkflowExecution, stats: PassStats, before: tuple[int, int]
    ) -> None:
        stats.replayed_calls += execution.ctx.replayed_calls - before[0]
        stats.new_calls += execution.ctx.new_calls - before[1]

    def _record(
        self, run_id: str, token: str, result: PassResult, history: list[Event], stats: PassStats
    ) -> str:
        rt = self.rt
        if result.status == "suspended":
            return "running"
        if result.status == "fault":
            assert result.error is not None
            raise result.error
        if result.status == "blocked":
            message = str(result.error)
            log.error("run %s is blocked: %s", run_id, message)
            rt.live.drop(run_id)
            blocked = NewEvent(ev.RUN_BLOCKED, "", {"error": message[:4000]})
            self._append_final(run_id, token, blocked, "blocked", stats)
            return "blocked"
        if result.status == "completed":
            try:
                payload = rt.codec.encode(
                    result.value, Place(run_id, ev.RUN_COMPLETED, ""), label="workflow result"
                )
                event = NewEvent(ev.RUN_COMPLETED, "", {}, payload)
            except EncodingError as exc:
                result = PassResult("failed", error=exc)
        if result.status == "failed":
            error = result.error or DurableError("workflow failed")
            payload = rt.codec.encode(error, Place(run_id, ev.RUN_FAILED, ""))
            meta = {"error": f"{type(error).__module__}.{type(error).__qualname__}"}
            event = NewEvent(ev.RUN_FAILED, "", meta, payload)
        self._append_final(run_id, token, event, result.status, stats)
        self._finished(run_id, event, history)
        return result.status

    def _append_final(
        self, run_id: str, token: str, event: NewEvent, status: str, stats: PassStats
    ) -> None:
        """Append a status entry and take it into the event cache in the same round trip, so
        finishing the pass needs no further read."""
        rt = self.rt
        after, known = rt.events.tail(run_id)
        retention = self._retention_ms if status in ("completed", "failed", "cancelled") else None
        with rt.clock(stats, "append_ms"):
            _, new = rt.store.append_fenced_and_read(
                run_id,
                token,
                [event],
                after_id=after,
                known=known,
                status=status,
                retention_ms=retention,
            )
        rt.events.absorb(run_id, after, new)

    @staticmethod
    def _waitfor(execution: WorkflowExecution) -> WaitFor | None:
        """What a suspended workflow waits for, so that other outcomes do not wake it."""
        waitfor = pending_waitfor(execution.ctx)
        # False: all it waits for is in (a pass is coming): wake on anything.
        return None if waitfor is False else waitfor

    def _resend_outbox(self, run_id: str, pending: list[str]) -> None:
        """A previous pass recorded work but died before starting it: start it again."""
        history, _ = self.rt.events.refresh(run_id)
        self.rt.starter.recover(run_id, history, pending)

    # -- endings ----------------------------------------------------------------------------------
    def _finished(self, run_id: str, final: NewEvent, history: list[Event]) -> None:
        """Tell a parent run its child finished; cancel a cancelled run's attached children."""
        rt = self.rt
        if final.kind == ev.RUN_CANCELLED:
            for child in attached_children(history):
                with contextlib.suppress(DurableError):  # already gone
                    rt.client.cancel_run(child, "parent cancelled")
        record = rt.store.get_run(run_id)
        parent = record.extra.get("parent") if record else None
        if not parent or record is None:
            return
        parent_cid = record.extra["parent_cid"]
        meta: dict[str, Any] = {"child": run_id, "status": final.kind}
        if final.kind == ev.RUN_CANCELLED:
            from ..errors import WorkflowCancelled

            value: Any = WorkflowCancelled(f"child workflow run {run_id} was cancelled")
            meta["error"] = "WorkflowCancelled"
        else:
            value = rt.codec.decode(final.payload or b"", Place(run_id, final.kind, ""))
            if final.kind == ev.RUN_FAILED:
                meta["error"] = final.meta.get("error", "error")
        blob = rt.codec.encode(value, Place(parent, ev.CHILD_FINISHED, parent_cid))
        try:
            recorded = rt.store.record_outcome(
                parent, parent_cid, NewEvent(ev.CHILD_FINISHED, parent_cid, meta, blob), wake=True
            )
        except DurableError:
            return  # the parent is gone
        if recorded.wake:
            rt.dispatcher.wake(parent)

    def _log_timing(
        self,
        run_id: str,
        stats: PassStats,
        started: float,
        warm: bool,
        report: OrchestrationReport,
    ) -> None:
        """One structured line per orchestrator invocation (DESIGN.md §5)."""
        if not timing_log.isEnabledFor(logging.INFO):
            return
        fields: dict[str, Any] = {
            "run": run_id,
            "workflow": stats.extra.get("workflow", "?"),
            "status": report.status,
            "passes": report.passes,
            "entries": stats.entries_total,
            "new": stats.entries_new,
            "replayed": stats.replayed_calls,
            "issued": stats.new_calls,
            "inline": stats.inline_steps,
            "dispatched": stats.dispatched_steps,
            "cache_hits": stats.extra.get("cache_hits", 0),
            "cache_misses": stats.extra.get("cache_misses", 0),
            "read_ms": round(stats.read_ms, 3),
            "replay_ms": round(stats.replay_ms, 3),
            "append_ms": round(stats.append_ms, 3),
            "total_ms": round((time.perf_counter() - started) * 1000, 3),
            "warm": str(warm).lower(),
        }
        timing_log.info(" ".join(f"{k}={v}" for k, v in fields.items()), extra={"durable": fields})


class PassClock:
    """When a pass began, and the hydration counters then, for its timing line."""

    def __init__(self, rt: Runtime) -> None:
        self.stats = PassStats()
        self.started = time.perf_counter()
        self.hits, self.misses = rt.hydration.hits, rt.hydration.misses
