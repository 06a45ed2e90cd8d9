"""What workflow authors import: decorators' products, helpers, and run handles."""

from .clock import now, sleep, sleep_until, timer
from .concurrency import ALL_COMPLETED, FIRST_COMPLETED, first, gather, wait
from .definition import ChildHandle, WorkflowDefinition
from .determinism import WorkflowInfo, patched, random, uuid4, workflow_info
from .handle import RunHandle
from .messages import receive, wait_for_event
from .policy import RetryPolicy
from .step import StepDefinition, StepInfo, current_step

__all__ = [
    "ALL_COMPLETED",
    "FIRST_COMPLETED",
    "ChildHandle",
    "RetryPolicy",
    "RunHandle",
    "StepDefinition",
    "StepInfo",
    "WorkflowDefinition",
    "WorkflowInfo",
    "current_step",
    "first",
    "gather",
    "now",
    "patched",
    "random",
    "receive",
    "sleep",
    "sleep_until",
    "timer",
    "uuid4",
    "wait",
    "wait_for_event",
    "workflow_info",
]
