"""The event vocabulary of a run's log (past tense), and the shape of one recorded entry.

An entry's stream id is its identity and its position; kinds are never redefined, only added.

A step that ran inline and settled in its first attempt is recorded as one entry: its outcome
(``step_completed`` or ``step_failed``), whose meta also holds what ``step_scheduled`` would
have (the call's ``name`` and argument hash ``h``; its packed input as ``in`` when it is
stored, see ``durable_inline_input_limit``). :data:`INLINE_STEP_FIELD` tells such an entry
apart; logs recorded with a ``step_scheduled`` entry before every outcome replay as before.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Final

__all__ = [
    "Event",
    "NewEvent",
    "RUN_STARTED",
    "STEP_SCHEDULED",
    "STEP_COMPLETED",
    "STEP_RETRYING",
    "STEP_FAILED",
    "TIMER_STARTED",
    "TIMER_FIRED",
    "EVENT_AWAITED",
    "EVENT_RECEIVED",
    "CHILD_STARTED",
    "CHILD_FINISHED",
    "MARKER",
    "RUN_BLOCKED",
    "RUN_RESUMED",
    "RUN_CANCEL_REQUESTED",
    "RUN_COMPLETED",
    "RUN_FAILED",
    "RUN_CANCELLED",
    "SIGNAL_RECEIVED",
    "OUTCOME_KINDS",
    "TERMINAL_KINDS",
    "INLINE_STEP_FIELD",
    "INLINE_STEP_KINDS",
    "entry_millis",
    "records_call",
    "recorded_input",
]

RUN_STARTED: Final = "run_started"
STEP_SCHEDULED: Final = "step_scheduled"
STEP_COMPLETED: Final = "step_completed"
STEP_RETRYING: Final = "step_retrying"
STEP_FAILED: Final = "step_failed"
TIMER_STARTED: Final = "timer_started"
TIMER_FIRED: Final = "timer_fired"
EVENT_AWAITED: Final = "event_awaited"
EVENT_RECEIVED: Final = "event_received"
CHILD_STARTED: Final = "child_started"
CHILD_FINISHED: Final = "child_finished"
MARKER: Final = "marker"
RUN_BLOCKED: Final = "run_blocked"
RUN_RESUMED: Final = "run_resumed"
RUN_CANCEL_REQUESTED: Final = "run_cancel_requested"
RUN_COMPLETED: Final = "run_completed"
RUN_FAILED: Final = "run_failed"
RUN_CANCELLED: Final = "run_cancelled"
#: A named message sent to one run (``durable.signal``); consumed in log order by ``receive``.
SIGNAL_RECEIVED: Final = "signal_received"

#: Kinds that settle a correlation id (recorded exactly once per id).
OUTCOME_KINDS: Final = frozenset(
    {STEP_COMPLETED, STEP_FAILED, TIMER_FIRED, EVENT_RECEIVED, CHILD_FINISHED}
)
TERMINAL_KINDS: Final = frozenset({RUN_COMPLETED, RUN_FAILED, RUN_CANCELLED})
#: Outcome kinds an inline step may be recorded as, call and outcome in one entry.
INLINE_STEP_KINDS: Final = frozenset({STEP_COMPLETED, STEP_FAILED})
#: The meta field that makes an outcome entry the record of its call too: the argument hash,
#: which a step's outcome carries only when it is that step's one entry.
INLINE_STEP_FIELD: Final = "h"


@dataclass(frozen=True, slots=True)
class NewEvent:
    """An entry about to be appended.

    ``meta`` is small, plain (never encrypted) metadata: names, hashes, attempts, deadlines.
    ``payload`` is an already-encoded codec blob (encrypted when keys are configured).
    """

    kind: str
    cid: str = ""
    meta: dict[str, Any] = field(default_factory=dict)
    payload: bytes | None = None


@dataclass(frozen=True, slots=True)
class Event:
    """A recorded entry: a :class:`NewEvent` plus its stream id."""

    entry_id: str
    kind: str
    cid: str = ""
    meta: dict[str, Any] = field(default_factory=dict)
    payload: bytes | None = None

    @property
    def millis(self) -> int:
        """Milliseconds since the epoch at which the entry was recorded (from its stream id)."""
        return entry_millis(self.entry_id)


def records_call(event: Event | NewEvent) -> bool:
    """Whether an entry records a step's call (what replay checks a call against): its
    ``step_scheduled`` entry, or the one entry of an inline step (see the module's doc)."""
    return event.kind == STEP_SCHEDULED or (
        event.kind in INLINE_STEP_KINDS and INLINE_STEP_FIELD in event.meta
    )


def recorded_input(event: Event) -> bytes | None:
    """The sealed input a call entry holds, if it holds one: a ``step_scheduled`` entry's
    payload, or an inline step's ``in``. Decode it at ``Place(run_id, STEP_SCHEDULED, cid)``."""
    if event.kind == STEP_SCHEDULED:
        return event.payload
    value = event.meta.get("in") if records_call(event) else None
    return value if isinstance(value, bytes) else None


def entry_millis(entry_id: str) -> int:
    return int(entry_id.split("-", 1)[0])
