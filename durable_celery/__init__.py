"""durable_celery: durable workflows for Celery, replayed from an event log in Redis streams."""

from .errors import (
    DecodingError,
    DecryptionError,
    DurableError,
    EncodingError,
    FatalError,
    NondeterminismError,
    RetryableError,
    RunNotFound,
    StepError,
    UnknownWorkflowError,
    WorkflowArgumentsError,
    WorkflowBlocked,
    WorkflowCancelled,
)
from .integration import Durable
from .workflow import RunHandle, StepInfo, current_step, gather

__version__ = "0.1.0"

__all__ = [
    "DecodingError",
    "DecryptionError",
    "Durable",
    "DurableError",
    "EncodingError",
    "FatalError",
    "NondeterminismError",
    "RetryableError",
    "RunHandle",
    "RunNotFound",
    "StepError",
    "StepInfo",
    "UnknownWorkflowError",
    "WorkflowArgumentsError",
    "WorkflowBlocked",
    "WorkflowCancelled",
    "current_step",
    "gather",
]
