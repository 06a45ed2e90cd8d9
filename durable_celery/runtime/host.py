"""The engine's host during one orchestration pass: records new work, runs or sends it.

New work found before the workflow blocks is recorded in one fenced append. A lone sequential
step that may run inline is executed first and recorded together with its outcome (scheduled +
completed in one round trip); at-least-once holds because a crash before that append simply
means the replay issues the step again.

Dispatched steps whose inputs are small (``message_input_limit``) are *sent first*: their task
messages carry the input, so they go out before the append, and that append also finishes the
pass (:meth:`EventStore.append_and_finish`) when nothing else arrived. No outbox is needed: a
pass that dies before its append is replayed, and the replay sends the steps again (the same
cids; each outcome is still recorded once). A step that finishes before the append lands has
its outcome parked by the store until its ``step_scheduled`` entry is in. Everything else is
recorded first and started after, through the outbox, and the pass ends with ``finish_pass``.

A pass may also begin *ahead* of the log (``Orchestrator.run_ahead``): its workflow has already
taken a step's outcome that is not recorded yet (:class:`Ahead`). The append that finishes the
pass then records that outcome too, when the workflow only sent steps; otherwise
:meth:`PassHost.begin` records it and takes the lease before anything else is written.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from ..codec import Place
from ..errors import DecodingError
from ..replay import events as ev
from ..replay.commands import (
    AwaitEvent,
    Command,
    RecordMarker,
    ScheduleStep,
    StartChild,
    StartTimer,
)
from ..replay.context import HostFault, ReplayContext
from ..replay.events import Event, NewEvent
from ..store.base import WaitFor
from ..store.entries import call_identity
from ..workflow.clock import StartTimerUntil
from .ahead import Ahead, AheadHost
from .steps import run_attempt

if TYPE_CHECKING:
    from .core import Runtime

__all__ = ["PassHost", "PassStats"]


@dataclass
class PassStats:
    entries_total: int = 0
    entries_new: int = 0
    replayed_calls: int = 0
    new_calls: int = 0
    inline_steps: int = 0
    dispatched_steps: int = 0
    appends: int = 0
    read_ms: float = 0.0
    replay_ms: float = 0.0
    append_ms: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)


class PassHost(AheadHost):
    def __init__(
        self,
        runtime: Runtime,
        run_id: str,
        token: str,
        stats: PassStats,
        ahead: Ahead | None = None,
    ) -> None:
        self.runtime = runtime
        self.run_id = run_id
        self.token = token
        self.stats = stats
        #: The last store call of this pass read the log up to its tail (an append does): the
        #: workflow may suspend without reading again. Whatever lands later makes finish_pass
        #: refuse, and the pass reads it then.
        self._caught_up = False
        #: The running workflow's context (set by the orchestrator): what it waits for.
        self.context: ReplayContext | None = None
        #: An append finished this pass (lease released, wake flag cleared). The workflow then
        #: suspends on the steps it sent; any write after it would meet LeaseLost, which stops
        #: the pass (see ReplayContext.block_until).
        self.finished = False
        #: The outcome this pass went ahead with, until recorded: by the append that finishes
        #: the pass when the workflow only sent steps, else by :meth:`begin` before anything
        #: else is written. The pass holds no lease until then.
        self.ahead = ahead
        #: The outcome gone ahead with is in the log (the pass is an ordinary one from then).
        self.ahead_recorded = False
        #: When the time of the log's last entry was current (``LiveExecutions.clock``), if not
        #: when the pass ends: the entries recorded ahead carry an estimate made earlier.
        self.clock_anchor: float | None = None

    # -- decoding ---------------------------------------------------------------------------------
    def fingerprint(self, value: Any, label: str) -> tuple[str, bytes]:
        return self.runtime.codec.fingerprint_packed(value, label=label)

    def outcome(self, event: Event) -> Any:
        try:
            return self._outcome(event)
        except DecodingError as exc:
            raise HostFault(exc) from exc

    def _outcome(self, event: Event) -> Any:
        rt = self.runtime
        if event.kind == ev.STEP_COMPLETED:
            place = Place(self.run_id, ev.STEP_COMPLETED, event.cid)
            blob = event.payload or b""
            return rt.hydration.get_or_decode(
                self.run_id, event.entry_id, lambda: rt.codec.decode(blob, place)
            )
        if event.kind == ev.STEP_FAILED:
            error = rt.codec.decode(
                event.payload or b"", Place(self.run_id, ev.STEP_FAILED, event.cid)
            )
            raise error
        if event.payload is None:
            return None
        value = rt.codec.decode(event.payload, Place(self.run_id, event.kind, event.cid))
        if event.meta.get("error") and isinstance(value, BaseException):
            raise value  # e.g. EventKeyInUse, or a child workflow's failure
        return value

    # -- new work ---------------------------------------------------------------------------------
    def on_blocked(self, commands: Sequence[Command]) -> Sequence[Event]:
        if self.ahead is not None and not self._may_finish_ahead(commands):
            self.begin()
        if commands:
            return self._record(commands)
        if self._caught_up:
            self._caught_up = False
            return []
        return self._read_new()

    def _may_finish_ahead(self, commands: Sequence[Command]) -> bool:
        """Whether these commands may be recorded with the outcome gone ahead with: dispatched
        steps only (sent first when small enough, see :meth:`_record`)."""
        lone = len(commands) == 1
        return bool(commands) and all(
            isinstance(c, ScheduleStep) and not self._inline(c, lone) for c in commands
        )

    def _inline(self, command: ScheduleStep, lone: bool) -> bool:
        step = self.runtime.registry.step(command.name)
        mode = step.execution or self.runtime.config.step_execution
        if mode == "auto":
            # Only a lone sequential step: fan-out gains from running on many workers, and a
            # step with time limits needs a task for Celery to enforce them.
            limited = any(k in step.task_options for k in ("time_limit", "soft_time_limit"))
            return lone and not limited and self.runtime.dispatcher.consumes(step)
        return mode == "inline"

    def _record(self, commands: Sequence[Command]) -> list[Event]:
        """Run inline steps, then record everything in one fenced append, then start the rest."""
        rt = self.runtime
        lone = len(commands) == 1
        events: list[NewEvent] = []
        outbox: list[str] = []
        to_send: list[tuple[ScheduleStep, int]] = []  # (command, index of its scheduled entry)
        retries: list[tuple[ScheduleStep, int, float]] = []
        later: list[Command] = []  # timers, event timeouts, children: started after the append
        claimed: list[AwaitEvent] = []  # buffered events to settle once recorded
        for command in commands:
            scheduled_at = len(events)
            if isinstance(command, ScheduleStep) and self._inline(command, lone):
                recorded, retry_delay = self._run_inline(command)
                events += recorded
                if retry_delay is not None:
                    outbox.append(command.cid)
                    retries.append((command, scheduled_at, retry_delay))
                continue
            events.append(self._scheduled_event(command))
            if isinstance(command, AwaitEvent):
                settled = rt.waits.register(self.run_id, command)
                if settled is not None:
                    events.append(settled)
                    if settled.meta.get("buffered"):
                        claimed.append(command)
                    continue
            if not isinstance(command, ScheduleStep):
                if not isinstance(command, RecordMarker):
                    # In the outbox until started: a crash in between restarts it on recovery.
                    outbox.append(command.cid)
                    later.append(command)
                continue
            outbox.append(command.cid)
            to_send.append((command, scheduled_at))
        if to_send and len(to_send) == len(events) and self._send_first(events):
            for command, at in to_send:
                step = rt.registry.step(command.name)
                rt.dispatcher.send_step(
                    step,
                    self.run_id,
                    command.cid,
                    "",
                    1,
                    events[at].meta.get("q"),
                    payload=events[at].payload or b"",
                    identity=call_identity(events[at]),
                )
                self.stats.dispatched_steps += 1
            return self._append_and_finish(events)
        ids, new = self._append(events, outbox=outbox)
        for command in claimed:
            rt.waits.settle(self.run_id, command)
        for command, at, delay in retries:
            rt.timers.schedule_retry(
                command.name, self.run_id, command.cid, 2, delay, ids[at], events[at].meta.get("q")
            )
        for command, at in to_send:
            step = rt.registry.step(command.name)
            rt.dispatcher.send_step(
                step, self.run_id, command.cid, ids[at], 1, events[at].meta.get("q")
            )
            self.stats.dispatched_steps += 1
        for command in later:
            rt.starter.start(self.run_id, command)
        return new

    def _run_inline(self, command: ScheduleStep) -> tuple[tuple[NewEvent, ...], float | None]:
        """Run a step here and now: the entries that record it, and the delay before its next
        attempt if it is retrying.

        A step that settled (completed or failed) is recorded as one entry: its outcome, whose
        meta also holds the call's identity, and its packed input (``in``) up to
        ``inline_input_limit`` bytes. Nothing will read that input back (a replay computes the
        arguments again, and checks them against the argument hash, which is always stored),
        and in a sequential workflow it is mostly the previous step's result, already in the
        log. Larger inputs are noted by size (``input_not_stored``), as Temporal's local
        activities record their result and not their input. A retrying step is recorded as a
        dispatched one is, ``step_scheduled`` (with its input: its next attempt is a task that
        reads it) and ``step_retrying``.
        """
        rt = self.runtime
        result = run_attempt(
            rt.registry.step(command.name),
            command.args,
            command.kwargs,
            run_id=self.run_id,
            cid=command.cid,
            attempt=1,
            codec=rt.codec,
        )
        self.stats.inline_steps += 1
        if result.outcome is None:
            assert result.retrying is not None
            return (self._scheduled_event(command), result.retrying), result.delay
        outcome = result.outcome
        limit, size = rt.config.inline_input_limit, len(command.packed)
        scheduled = self._scheduled_event(command, with_input=not 0 <= limit < size)
        meta = scheduled.meta
        if scheduled.payload is not None:
            meta["in"] = scheduled.payload
        else:
            meta["input_not_stored"] = size
        meta.update(outcome.meta)
        return (NewEvent(outcome.kind, outcome.cid, meta, outcome.payload),), None

    def _send_first(self, events: list[NewEvent]) -> bool:
        limit = self.runtime.config.message_input_limit
        return (
            limit > 0
            and getattr(self.runtime.dispatcher, "carries_input", False)
            and all(len(e.payload or b"") <= limit for e in events)
        )

    def _append_and_finish(self, events: list[NewEvent]) -> list[Event]:
        """Record steps already sent, and finish the pass in the same round trip when the
        workflow is certain to suspend on them (nothing else arrived)."""
        rt = self.runtime
        waitfor = pending_waitfor(self.context)
        if waitfor is False:
            _, new = self._append(events)  # it waits on something already in: no finishing
            return new
        if self.ahead is not None:
            return self._record_ahead(events, waitfor)
        after, known = rt.events.tail(self.run_id)
        with rt.clock(self.stats, "append_ms"):
            _, new, self.finished = rt.store.append_and_finish(
                self.run_id, self.token, events, after_id=after, known=known, waitfor=waitfor
            )
        self.stats.appends += 1
        self._caught_up = True
        if not rt.events.absorb(self.run_id, after, new) and not self.finished:
            return self._read_new()  # the cache moved under us: read properly
        # Finished: the lease is free and another pass may already be reading on; this pass
        # takes in nothing past its own append (the cache, if it moved, is left to that pass).
        self.stats.entries_new += len(new)
        return new

    def cancel(self, cids: list[str]) -> None:
        """Revoke dispatched steps whose results a race will never use."""
        revoke = getattr(self.runtime.dispatcher, "revoke", None)
        if revoke is not None:
            revoke([f"{self.run_id}:{cid}" for cid in cids if cid.startswith(ScheduleStep.prefix)])

    def _scheduled_event(self, command: Command, *, with_input: bool = True) -> NewEvent:
        rt = self.runtime
        place = Place(self.run_id, command.scheduled_kind, command.cid)
        if isinstance(command, ScheduleStep):
            payload = None
            if with_input and command.packed:
                payload = rt.codec.seal(command.packed, place, source=f"{command.name}(...)")
            elif with_input:
                payload = rt.codec.encode(
                    (command.args, command.kwargs), place, label=f"{command.name}(...)"
                )
            meta = command.identity()
            step = rt.registry.step(command.name)
            if step.route is not None:
                queue = step.route(command.args, command.kwargs)
                if queue:
                    meta["q"] = queue
            return NewEvent(ev.STEP_SCHEDULED, command.cid, meta, payload)
        if isinstance(command, StartTimerUntil):
            # The instant too: a restart after a crash must not count the seconds from this
            # entry, which may be written long after the log time they were counted from.
            meta = {"seconds": command.seconds, "until_ms": command.until_ms}
            return NewEvent(ev.TIMER_STARTED, command.cid, meta)
        if isinstance(command, StartTimer):
            return NewEvent(ev.TIMER_STARTED, command.cid, {"seconds": command.seconds})
        if isinstance(command, AwaitEvent):
            meta = {"key": command.key, "timeout": command.timeout}
            return NewEvent(ev.EVENT_AWAITED, command.cid, meta)
        if isinstance(command, RecordMarker):
            payload = rt.codec.encode(command.value, place, label=f"marker {command.name}")
            return NewEvent(ev.MARKER, command.cid, {"name": command.name}, payload)
        if isinstance(command, StartChild):
            payload = rt.codec.encode(
                {"args": command.args, "kwargs": command.kwargs},
                place,
                label=f"{command.workflow}(...)",
            )
            meta = {
                "name": command.workflow,
                "child": command.child_run_id,
                "detached": command.detached,
            }
            return NewEvent(ev.CHILD_STARTED, command.cid, meta, payload)
        raise TypeError(f"unknown command {type(command).__name__}")

    def _append(
        self, events: list[NewEvent], outbox: Sequence[str] = ()
    ) -> tuple[list[str], list[Event]]:
        """One round trip: append (fenced) and read everything after what this pass has seen,
        including entries others appended meanwhile."""
        self.begin()  # steps too large to send first: the outcome gone ahead with goes first
        rt = self.runtime
        after, known = rt.events.tail(self.run_id)
        with rt.clock(self.stats, "append_ms"):
            ids, new = rt.store.append_fenced_and_read(
                self.run_id, self.token, events, after_id=after, known=known, outbox=outbox
            )
        self.stats.appends += 1
        if not rt.events.absorb(self.run_id, after, new):
            new = self._read_new()  # the cache moved under us: read properly
        else:
            self.stats.entries_new += len(new)
        self._caught_up = True
        return ids, new

    def _read_new(self) -> list[Event]:
        with self.runtime.clock(self.stats, "read_ms"):
            _, new = self.runtime.events.refresh(self.run_id)
        self.stats.entries_new += len(new)
        return new


def pending_waitfor(ctx: ReplayContext | None) -> WaitFor | Literal[False] | None:
    """What a blocked workflow waits for, for wake coalescing: None when any outcome may
    unblock it, False when all it waits for is already in the log (a pass must follow)."""
    hint = None if ctx is None else ctx.waiting
    if hint is None or ctx is None:
        return None
    mode, cids = hint
    missing = sum(1 for cid in cids if not ctx.recorded_outcome(cid))
    if missing == 0:
        return False
    return WaitFor(mode, tuple(cids), missing if mode == "all" else 1)
