"""What workflow authors import: decorators' products, helpers, and run handles."""

from .concurrency import gather
from .definition import WorkflowDefinition
from .handle import RunHandle
from .policy import RetryPolicy
from .step import StepDefinition, StepInfo, current_step

__all__ = [
    "RetryPolicy",
    "RunHandle",
    "StepDefinition",
    "StepInfo",
    "WorkflowDefinition",
    "current_step",
    "gather",
]
