"""Starting what a pass recorded (timers, event timeouts, child runs), and restarting it after
a crash.

Each of these is recorded first (fenced append, with its id in the run's outbox), then started
here. A pass that dies in between leaves the id in the outbox; the next pass calls
:meth:`CommandStarter.recover`, which starts it again. Starting is idempotent: a timer keeps its
first deadline, a child run is created once.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from ..codec import Place
from ..errors import DurableError
from ..replay import events as ev
from ..replay.commands import AwaitEvent, Command, StartChild, StartTimer
from ..replay.events import Event, NewEvent
from ..workflow.clock import StartTimerUntil

if TYPE_CHECKING:
    from .core import Runtime

__all__ = ["CommandStarter", "TIMER", "EVENT_TIMEOUT"]

log = logging.getLogger("durable_celery.runtime")

TIMER = "timer"
EVENT_TIMEOUT = "event-timeout"


class CommandStarter:
    def __init__(self, runtime: Runtime) -> None:
        self.rt = runtime

    def start(self, run_id: str, command: Command) -> None:
        store = self.rt.store
        if isinstance(command, StartTimerUntil):
            # An instant, not a duration: this pass may run long after now() inside it.
            store.add_timer(TIMER, run_id, command.cid, command.until_ms - store.now_ms(), {})
        elif isinstance(command, StartTimer):
            store.add_timer(TIMER, run_id, command.cid, int(command.seconds * 1000), {})
        elif isinstance(command, AwaitEvent):
            if command.timeout is not None:
                data = {"key": command.key}
                store.add_timer(
                    EVENT_TIMEOUT, run_id, command.cid, int(command.timeout * 1000), data
                )
        elif isinstance(command, StartChild):
            self._start_child(
                run_id,
                command.cid,
                command.workflow,
                command.child_run_id,
                command.args,
                command.kwargs,
                command.detached,
            )

    def _start_child(
        self,
        parent: str,
        cid: str,
        workflow: str,
        child: str,
        args: Any,
        kwargs: Any,
        detached: bool,
    ) -> None:
        rt = self.rt
        definition = rt.registry.workflow(workflow)
        payload = rt.codec.encode(
            {"args": tuple(args), "kwargs": dict(kwargs)},
            Place(child, ev.RUN_STARTED, ""),
            label=f"{workflow}(...)",
        )
        started = NewEvent(
            ev.RUN_STARTED,
            "",
            {"workflow": workflow, "code": definition.code_hash, "parent": parent},
            payload,
        )
        extra = {"parent": parent, "parent_cid": cid, "detached": "1" if detached else "0"}
        if rt.store.create_run(child, workflow, started, extra):
            rt.dispatcher.wake(child)
            return
        existing = rt.store.get_run(child)
        if existing is None or existing.extra.get("parent") == parent:
            return  # ours already (a recovery), or deleted meanwhile
        error = DurableError(
            f"cannot start child workflow {workflow!r} as run {child!r}: that id is already used "
            f"by another run; choose a unique child id"
        )
        blob = rt.codec.encode(error, Place(parent, ev.CHILD_FINISHED, cid))
        event = NewEvent(ev.CHILD_FINISHED, cid, {"child": child, "error": "DurableError"}, blob)
        if rt.store.record_outcome(parent, cid, event, wake=True).wake:
            rt.dispatcher.wake(parent)

    # -- after a crash ----------------------------------------------------------------------------
    def recover(self, run_id: str, history: list[Event], cids: list[str]) -> None:
        rt = self.rt
        settled = {e.cid for e in history if e.kind in ev.OUTCOME_KINDS}
        scheduled = {e.cid: e for e in history if e.kind in _RECOVERABLE}
        for cid in cids:
            entry = scheduled.get(cid)
            if entry is None or cid in settled:
                continue
            log.warning(
                "run %s: restarting %s %s after an interrupted pass", run_id, entry.kind, cid
            )
            if entry.kind == ev.STEP_SCHEDULED:
                attempt = 1 + sum(1 for e in history if e.cid == cid and e.kind == ev.STEP_RETRYING)
                step = rt.registry.step(str(entry.meta["name"]))
                queue = str(entry.meta.get("q") or "") or None
                rt.dispatcher.send_step(step, run_id, cid, entry.entry_id, attempt, queue)
            elif entry.kind == ev.TIMER_STARTED:
                due = entry.meta.get("until_ms")  # sleep_until: an instant
                if due is None:
                    due = entry.millis + float(entry.meta["seconds"]) * 1000
                remaining = float(due) - rt.store.now_ms()
                rt.store.add_timer(TIMER, run_id, cid, max(0, int(remaining)), {})
            elif entry.kind == ev.EVENT_AWAITED:
                command = AwaitEvent(
                    cid, key=str(entry.meta["key"]), timeout=entry.meta.get("timeout")
                )
                outcome = rt.waits.register(run_id, command)
                if outcome is not None:
                    if rt.store.record_outcome(run_id, cid, outcome, wake=True).wake:
                        rt.dispatcher.wake(run_id)
                    if outcome.meta.get("buffered"):
                        rt.waits.settle(run_id, command)
                elif command.timeout is not None:
                    remaining = entry.millis + command.timeout * 1000 - rt.store.now_ms()
                    rt.store.add_timer(
                        EVENT_TIMEOUT, run_id, cid, max(0, int(remaining)), {"key": command.key}
                    )
            elif entry.kind == ev.CHILD_STARTED:
                inputs = rt.codec.decode(entry.payload or b"", Place(run_id, ev.CHILD_STARTED, cid))
                self._start_child(
                    run_id,
                    cid,
                    str(entry.meta["name"]),
                    str(entry.meta["child"]),
                    inputs["args"],
                    inputs["kwargs"],
                    bool(entry.meta.get("detached")),
                )


_RECOVERABLE = frozenset({ev.STEP_SCHEDULED, ev.TIMER_STARTED, ev.EVENT_AWAITED, ev.CHILD_STARTED})
