"""The deterministic engine: events, the replay context, commands. No I/O, no redis, no celery."""

from .commands import AwaitEvent, Command, RecordMarker, ScheduleStep, StartChild, StartTimer
from .context import Host, Pending, ReplayContext, current_context, require_context
from .engine import PassResult, WorkflowExecution, live_supported
from .events import Event, NewEvent

__all__ = [
    "AwaitEvent",
    "Command",
    "Event",
    "Host",
    "NewEvent",
    "PassResult",
    "Pending",
    "RecordMarker",
    "ReplayContext",
    "ScheduleStep",
    "StartChild",
    "StartTimer",
    "WorkflowExecution",
    "current_context",
    "live_supported",
    "require_context",
]
