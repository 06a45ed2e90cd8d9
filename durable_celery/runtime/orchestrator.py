"""One orchestration of a run: lease, read the delta, replay (or resume), record, finish.

A pass loops while entries keep arriving (``finish_pass`` refuses to finish when the log grew
since it was read), so wakes that land during a pass cost no extra broker hop; at most one pass
per run is queued or running at a time (the wake flag).
"""

from __future__ import annotations

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
from .core import Runtime
from .host import PassHost, PassStats

__all__ = ["Orchestrator", "OrchestrationReport"]

timing_log = logging.getLogger("durable_celery.timing")
log = logging.getLogger("durable_celery.orchestrator")


@dataclass
class OrchestrationReport:
    run_id: str
    status: str  # the run's status after the pass, or "busy" when another pass holds the lease
    passes: int = 0
    retry_after: float = 0.0


class Orchestrator:
    def __init__(self, runtime: Runtime) -> None:
        self.rt = runtime
        self._retention_ms = int(runtime.config.retention * 1000)

    def run(self, run_id: str) -> OrchestrationReport:
        rt = self.rt
        token = secrets.token_hex(8)
        ttl_ms = int(rt.config.lease_timeout * 1000)
        if not rt.store.acquire_lease(run_id, token, ttl_ms):
            wait = max(rt.store.lease_ttl_ms(run_id), 50) / 1000
            return OrchestrationReport(run_id, "busy", retry_after=wait)
        report = OrchestrationReport(run_id, "running")
        try:
            self._resend_outbox(run_id)
            while True:
                report.passes += 1
                report.status = self._one_pass(run_id, token)
                last = rt.events.last_id(run_id) or "0-0"
                if rt.store.finish_pass(run_id, token, last):
                    break
        except LeaseLost:
            log.info("run %s: lease lost to another orchestrator; this pass stops", run_id)
            rt.live.drop(run_id)
            report.status = "lease-lost"
        except BaseException:
            rt.live.drop(run_id)
            rt.store.release_lease(run_id, token)
            raise
        if report.status in ("completed", "failed", "cancelled"):
            rt.forget_run(run_id)
        return report

    # -- one pass ---------------------------------------------------------------------------------
    def _one_pass(self, run_id: str, token: str) -> str:
        rt = self.rt
        stats = PassStats()
        started = time.perf_counter()
        with rt.clock(stats, "read_ms"):
            history, new = rt.events.refresh(run_id)
        stats.entries_total, stats.entries_new = len(history), len(new)
        state = _state_of(history)
        warm = False
        if state == "running":
            host = PassHost(rt, run_id, token, stats)
            result, warm, execution = self._drive(run_id, host, history, new, stats)
            state = self._record(run_id, token, result, history, stats)
            if result.status == "suspended" and execution is not None and execution.parked:
                rt.live.put(run_id, execution)
        elif state == "cancelling":
            rt.live.drop(run_id)
            cancelled = NewEvent(ev.RUN_CANCELLED, "", {})
            rt.store.append_fenced(
                run_id, token, [cancelled], status="cancelled", retention_ms=self._retention_ms
            )
            self._finished(run_id, cancelled, history)
            state = "cancelled"
        stats.entries_total = len(history)
        self._log_timing(run_id, history, stats, started, warm, state)
        return state

    def _drive(
        self, run_id: str, host: PassHost, history: list[Event], new: list[Event], stats: PassStats
    ) -> tuple[PassResult, bool, WorkflowExecution | None]:
        rt = self.rt
        execution = rt.live.take(run_id)
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
            with rt.clock(stats, "replay_ms"):
                result = execution.resume(host, new)
            self._count(execution, stats)
            return result, True, execution
        if execution is not None:
            execution.abandon()  # the log moved in a way it did not see: replay from the top
        try:
            execution = self._new_execution(run_id, host, history)
        except DurableError as exc:  # unknown workflow, undecodable input: block, lose nothing
            return PassResult("blocked", error=exc), False, None
        with rt.clock(stats, "replay_ms"):
            result = execution.start()
        self._count(execution, stats)
        return result, False, execution

    def _new_execution(self, run_id: str, host: PassHost, history: list[Event]) -> WorkflowExecution:
        rt = self.rt
        started = history[0]
        workflow = rt.registry.workflow(str(started.meta.get("workflow")))
        if started.meta.get("code") != workflow.code_hash:
            log.info(
                "run %s: replaying with changed code for workflow %s (%s -> %s)",
                run_id, workflow.name, started.meta.get("code"), workflow.code_hash,
            )
        inputs = rt.codec.decode(started.payload or b"", Place(run_id, ev.RUN_STARTED, ""))
        return WorkflowExecution(
            workflow.fn, inputs["args"], inputs["kwargs"],
            run_id=run_id, workflow=workflow.name, history=history, host=host,
            live=rt.live_enabled,
        )

    @staticmethod
    def _count(execution: WorkflowExecution, stats: PassStats) -> None:
        stats.replayed_calls = execution.ctx.replayed_calls
        stats.new_calls = execution.ctx.new_calls

    def _record(
        self, run_id: str, token: str, result: PassResult, history: list[Event], stats: PassStats
    ) -> str:
        rt = self.rt
        if result.status == "suspended":
            return "running"
        if result.status == "blocked":
            message = str(result.error)
            log.error("run %s is blocked: %s", run_id, message)
            rt.live.drop(run_id)
            rt.store.append_fenced(
                run_id, token, [NewEvent(ev.RUN_BLOCKED, "", {"error": message[:4000]})],
                status="blocked",
            )
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
        with rt.clock(stats, "append_ms"):
            rt.store.append_fenced(
                run_id, token, [event], status=result.status, retention_ms=self._retention_ms
            )
        self._finished(run_id, event, history)
        return result.status

    def _resend_outbox(self, run_id: str) -> None:
        """A previous pass recorded work but died before starting it: start it again."""
        pending = self.rt.store.pending_outbox(run_id)
        if pending:
            history, _ = self.rt.events.refresh(run_id)
            self.rt.starter.recover(run_id, history, pending)

    # -- endings ----------------------------------------------------------------------------------
    def _finished(self, run_id: str, final: NewEvent, history: list[Event]) -> None:
        """Tell a parent run its child finished; cancel a cancelled run's attached children."""
        rt = self.rt
        if final.kind == ev.RUN_CANCELLED:
            for child in _attached_children(history):
                try:
                    rt.client.cancel_run(child, "parent cancelled")
                except DurableError:
                    pass  # already gone
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
        self, run_id: str, history: list[Event], stats: PassStats, started: float, warm: bool,
        state: str,
    ) -> None:
        if not timing_log.isEnabledFor(logging.INFO):
            return
        hyd = self.rt.hydration
        fields: dict[str, Any] = {
            "run": run_id,
            "workflow": history[0].meta.get("workflow") if history else "?",
            "status": state,
            "entries": stats.entries_total,
            "new": stats.entries_new,
            "replayed": stats.replayed_calls,
            "issued": stats.new_calls,
            "inline": stats.inline_steps,
            "dispatched": stats.dispatched_steps,
            "cache_hits": hyd.hits,
            "cache_misses": hyd.misses,
            "read_ms": round(stats.read_ms, 3),
            "replay_ms": round(stats.replay_ms, 3),
            "append_ms": round(stats.append_ms, 3),
            "total_ms": round((time.perf_counter() - started) * 1000, 3),
            "warm": str(warm).lower(),
        }
        timing_log.info(" ".join(f"{k}={v}" for k, v in fields.items()), extra={"durable": fields})


def _attached_children(history: list[Event]) -> list[str]:
    finished = {e.cid for e in history if e.kind == ev.CHILD_FINISHED}
    return [
        str(e.meta["child"]) for e in history
        if e.kind == ev.CHILD_STARTED and not e.meta.get("detached") and e.cid not in finished
    ]


def _state_of(history: list[Event]) -> str:
    """running | blocked | cancelling | completed | failed | cancelled, from the log alone."""
    state = "running"
    for event in history:
        kind = event.kind
        if kind in ev.TERMINAL_KINDS:
            return {ev.RUN_COMPLETED: "completed", ev.RUN_FAILED: "failed"}.get(kind, "cancelled")
        if kind == ev.RUN_BLOCKED:
            state = "blocked"
        elif kind == ev.RUN_RESUMED:
            state = "running"
        elif kind == ev.RUN_CANCEL_REQUESTED:
            return "cancelling"
    return state
