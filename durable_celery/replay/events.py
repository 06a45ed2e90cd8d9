"""The event vocabulary of a run's log (past tense), and the shape of one recorded entry.

An entry's stream id is its identity and its position; kinds are never redefined, only added.
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
    "entry_millis",
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


def entry_millis(entry_id: str) -> int:
    return int(entry_id.split("-", 1)[0])
