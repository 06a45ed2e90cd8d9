"""The replay context: what a durable call inside a running workflow talks to.

Deliveries follow log order. The *cursor* counts history entries delivered to the workflow; an
outcome is visible only once the cursor has passed it, and the cursor moves only while the
workflow is blocked on something not yet visible. So a race (``first``) or a partial wait sees
exactly what it saw the first time, however many entries the log holds by the time of a replay.
"""

from __future__ import annotations

import random as _random
import sys
import traceback
from collections.abc import Callable, Iterable, Sequence
from contextvars import ContextVar
from typing import Any, Protocol

from ..errors import LeaseLost, NondeterminismError, NotInWorkflowError, Suspension
from . import events as ev
from .commands import Command

__all__ = [
    "Host",
    "HostFault",
    "Pending",
    "ReplayContext",
    "current_context",
    "require_context",
]

_current: ContextVar[ReplayContext | None] = ContextVar("durable_replay_context", default=None)

_SCHEDULED_KINDS = frozenset(
    {ev.STEP_SCHEDULED, ev.TIMER_STARTED, ev.EVENT_AWAITED, ev.CHILD_STARTED, ev.MARKER}
)
_PACKAGE_DIR = __file__.rsplit("/replay/", 1)[0]


class Host(Protocol):
    """What the engine needs from the runtime: decoding, and a way to get new entries."""

    run_id: str

    def fingerprint(self, value: Any, label: str) -> tuple[str, bytes]:
        """``(argument hash, packed bytes)`` of a call's arguments; EncodingError if they
        cannot be stored."""

    def outcome(self, event: ev.Event) -> Any:
        """The recorded value of an outcome entry, or raise its recorded error."""

    def on_blocked(self, commands: Sequence[Command]) -> Sequence[ev.Event]:
        """Record ``commands``, run what can run now, and return every entry appended to the
        log after the last one the engine has seen (empty: nothing more can happen now)."""


class Diverged(Suspension):
    """Replay hit a call the log contradicts; carries the NondeterminismError."""

    def __init__(self, error: NondeterminismError) -> None:
        super().__init__(str(error))
        self.error = error


class HostFault(Suspension):
    """The host could not provide a recorded value (undecodable payload, missing key).

    A BaseException so workflow code cannot catch it: the pass stops and writes nothing, since
    the fault is in this process's configuration, not in the run.
    """

    def __init__(self, error: Exception) -> None:
        super().__init__(str(error))
        self.error = error


class ReplayContext:
    def __init__(
        self,
        run_id: str,
        workflow: str,
        history: Sequence[ev.Event],
        host: Host,
        park: Callable[[], Sequence[ev.Event]] | None = None,
    ) -> None:
        self.run_id = run_id
        self.workflow = workflow
        self.host = host
        self._park = park
        self.history: list[ev.Event] = []
        self.cursor = 0
        self._scheduled: dict[str, ev.Event] = {}
        self._outcome_pos: dict[str, int] = {}
        self._counters: dict[str, int] = {}
        self._issued: set[str] = set()
        self._consumed = 0  # recorded calls this execution has made (replayed or issued)
        self._new: list[Command] = []
        self._signals: dict[str, list[int]] = {}
        self._signals_taken: dict[str, int] = {}
        self._markers: dict[str, ev.Event] = {}
        self.patches: dict[str, bool] = {}
        #: While blocked: ("all" | "any", cids) when only those outcomes can unblock the
        #: workflow, so the store may record others without waking the run (None: anything may).
        self.waiting: tuple[str, tuple[str, ...]] | None = None
        self.replayed_calls = 0
        self.new_calls = 0
        self.suspended = False
        self.diverged: NondeterminismError | None = None
        self.fault: Exception | None = None
        self.rng = _random.Random(run_id)
        #: The DeterministicLoop driving an async workflow (None for sync workflows).
        self.loop: Any = None
        self.extend(history)

    # -- history ----------------------------------------------------------------------------------
    def extend(self, events: Iterable[ev.Event]) -> None:
        for event in events:
            pos = len(self.history)
            self.history.append(event)
            if event.kind in _SCHEDULED_KINDS:
                if event.cid not in self._scheduled and event.cid in self._issued:
                    self._consumed += 1  # our own new work, now recorded
                self._scheduled[event.cid] = event
                if event.kind == ev.MARKER:
                    self._markers[str(event.meta.get("name"))] = event
            elif event.kind in ev.OUTCOME_KINDS:
                self._outcome_pos.setdefault(event.cid, pos)
                if ev.records_call(event):  # an inline step's one entry: its call's too
                    if event.cid not in self._scheduled and event.cid in self._issued:
                        self._consumed += 1
                    self._scheduled.setdefault(event.cid, event)
            elif event.kind == ev.SIGNAL_RECEIVED:
                self._signals.setdefault(str(event.meta.get("name")), []).append(pos)

    @property
    def last_entry_id(self) -> str | None:
        return self.history[-1].entry_id if self.history else None

    def now_ms(self) -> int:
        """Time as the log records it: the id of the last entry delivered to the workflow."""
        if self.cursor == 0:
            self.cursor = 1 if self.history else 0
        return self.history[self.cursor - 1].millis if self.history else 0

    # -- issuing calls ----------------------------------------------------------------------------
    def next_cid(self, prefix: str) -> str:
        n = self._counters.get(prefix, 0) + 1
        self._counters[prefix] = n
        return f"{prefix}{n}"

    def issue(self, command: Command) -> Pending:
        """Match a call against the log (replay) or queue it as new work."""
        self.check_live()
        self._issued.add(command.cid)
        recorded = self._scheduled.get(command.cid)
        if recorded is None:
            self._new.append(command)
            self.new_calls += 1
        else:
            if not _same_kind(recorded, command) or not command.matches(recorded.meta):
                self.diverge(
                    f"at {command.cid} the log recorded {_describe_recorded(recorded)} but the "
                    f"workflow now calls {command.describe()}"
                )
            self.replayed_calls += 1
            self._consumed += 1
        return Pending(self, command.cid)

    # -- markers and signals ----------------------------------------------------------------------
    def marker(self, name: str) -> ev.Event | None:
        return self._markers.get(name)

    @property
    def past_recorded_work(self) -> bool:
        """True while the log still holds calls this execution has not made again: the run
        went further than here with the code it had then (so a new ``patched()`` is False)."""
        return self._consumed < len(self._scheduled)

    def next_signal_position(self, name: str) -> int | None:
        """Log position of the next unconsumed signal ``name``, if it is in the log at all."""
        positions = self._signals.get(name, ())
        taken = self._signals_taken.get(name, 0)
        return positions[taken] if len(positions) > taken else None

    def take_signal(self, name: str) -> ev.Event:
        pos = self.next_signal_position(name)
        assert pos is not None and pos < self.cursor
        self._signals_taken[name] = self._signals_taken.get(name, 0) + 1
        return self.history[pos]

    def visible(self, pos: int | None) -> bool:
        return pos is not None and pos < self.cursor

    def recorded(self, cid: str) -> ev.Event | None:
        return self._scheduled.get(cid)

    def diverge(self, what: str) -> None:
        error = NondeterminismError(
            f"workflow {self.workflow!r} (run {self.run_id}) is not deterministic: {what}, "
            f"{_source_line()}. Make the workflow take the same path for the same log (use "
            "steps, now(), random() for outside values), or guard new code with patched(); "
            "then resume the run."
        )
        self.diverged = error
        raise Diverged(error)

    def check_live(self) -> None:
        if self.fault is not None:
            raise HostFault(self.fault)
        if self.suspended or self.diverged is not None:
            # The workflow swallowed a Suspension (bare except): keep unwinding.
            if self.diverged is not None:
                raise Diverged(self.diverged)
            raise Suspension()

    # -- waiting ----------------------------------------------------------------------------------
    def recorded_outcome(self, cid: str) -> bool:
        """Whether the log read so far holds ``cid``'s outcome (delivered or not)."""
        return cid in self._outcome_pos

    def is_done(self, cid: str) -> bool:
        pos = self._outcome_pos.get(cid)
        return pos is not None and pos < self.cursor

    def position(self, cid: str) -> int:
        return self._outcome_pos.get(cid, sys.maxsize)

    def block_until(
        self, ready: Callable[[], bool], waiting: tuple[str, Sequence[str]] | None = None
    ) -> None:
        """Deliver entries in log order until ``ready()``; get more from the host; else suspend.

        ``waiting`` says what ``ready`` depends on: ("all", cids) or ("any", cids); None when
        anything else (signals, resumes) could matter. It lets the store record other outcomes
        without waking the run.
        """
        self.check_live()
        # Refused even when ready() already holds: whether an outcome is delivered yet depends
        # on how the run's log interleaved, and a call must not fail on one run and work on
        # another.
        if self.loop is not None and not self.loop.driving:
            raise TypeError(
                "a blocking durable call was made inside an async workflow; await instead: "
                "`await step(...)`, `await asyncio.sleep(s)`, `await asyncio.gather(...)`, "
                "`await asyncio.wait(...)`, `await asyncio.wait_for(...)`"
            )
        hint = None if waiting is None else (waiting[0], tuple(waiting[1]))
        while not ready():
            if self.cursor < len(self.history):
                self.cursor += 1
                continue
            # Set while the host records new work too: a pass that finishes in its append
            # records there what would unblock the workflow.
            self.waiting = hint
            try:
                new = self.host.on_blocked(self.take_commands())
            except LeaseLost as lost:
                # The pass must stop, whatever the workflow does with the error: never a
                # workflow failure (a bare `except` in the workflow cannot swallow it).
                self.fault = lost
                raise HostFault(lost) from lost
            if not new and self._park is not None:
                new = self._park()
            if not new:
                self.suspended = True
                raise Suspension()
            self.waiting = None
            self.extend(new)

    def cancel(self, cids: Sequence[str]) -> None:
        """Ask the host to stop calls whose results will never be used (best effort)."""
        cancel = getattr(self.host, "cancel", None)
        if cancel is not None and cids:
            cancel(list(cids))

    def take_commands(self) -> list[Command]:
        new, self._new = self._new, []
        return new

    def value(self, cid: str) -> Any:
        pos = self._outcome_pos[cid]
        try:
            return self.host.outcome(self.history[pos])
        except HostFault as fault:
            self.fault = fault.error  # even a bare `except:` in the workflow cannot go on
            raise

    def unconsumed(self) -> list[ev.Event]:
        """Recorded calls this replay never made (code removed a call)."""
        return [e for cid, e in self._scheduled.items() if cid not in self._issued]


class Pending:
    """A durable call in flight: resolves when its outcome is delivered."""

    __slots__ = ("cid", "ctx")

    def __init__(self, ctx: ReplayContext, cid: str) -> None:
        self.ctx = ctx
        self.cid = cid

    def done(self) -> bool:
        return self.ctx.is_done(self.cid)

    def result(self) -> Any:
        self.ctx.block_until(self.done, ("any", (self.cid,)))
        return self.ctx.value(self.cid)

    def __await__(self) -> Any:
        loop = self.ctx.loop
        if loop is None or _running_loop() is not loop:
            raise RuntimeError(
                "a durable call can only be awaited inside an async @durable.workflow, on the "
                "workflow's own loop; in a sync workflow call step(...) or .result() instead"
            )
        return loop.future_for(self).__await__()

    def __repr__(self) -> str:
        return f"<Pending {self.cid} {'done' if self.done() else 'waiting'}>"


def _running_loop() -> Any:
    import asyncio

    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


def current_context() -> ReplayContext | None:
    return _current.get()


def require_context(api: str) -> ReplayContext:
    ctx = _current.get()
    if ctx is None:
        raise NotInWorkflowError(
            f"{api} can only be used inside a running @durable.workflow function"
        )
    return ctx


def _same_kind(recorded: ev.Event, command: Command) -> bool:
    if recorded.kind == command.scheduled_kind:
        return True
    return command.scheduled_kind == ev.STEP_SCHEDULED and ev.records_call(recorded)


def _describe_recorded(event: ev.Event) -> str:
    if ev.records_call(event):
        return f"step {event.meta.get('name')!r} (argument hash {event.meta.get('h')})"
    return f"{event.kind} {event.meta}"


def _source_line() -> str:
    """The innermost frame of user code: where the diverging call was made."""
    for frame in reversed(traceback.extract_stack()):
        if not frame.filename.startswith(_PACKAGE_DIR):
            return f"called at {frame.filename}:{frame.lineno} ({(frame.line or '').strip()})"
    return "called from an unknown line"


def set_context(ctx: ReplayContext | None) -> Any:
    return _current.set(ctx)


def reset_context(token: Any) -> None:
    _current.reset(token)
