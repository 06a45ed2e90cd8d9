"""Every error durable_celery raises, under one root.

Two families live here:

* :class:`DurableError` and its subclasses are ordinary exceptions: they say what happened and
  what to do, and they pickle (Celery moves exceptions between processes).
* :class:`Suspension` is a ``BaseException``. The engine raises it inside a workflow to unwind the
  stack when the run must wait; a user's ``except Exception:`` cannot swallow it.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "DurableError",
    "ConfigurationError",
    "EncodingError",
    "DecodingError",
    "DecryptionError",
    "UnknownWorkflowError",
    "WorkflowArgumentsError",
    "NondeterminismError",
    "StepError",
    "RetryableError",
    "FatalError",
    "WorkflowFailed",
    "WorkflowBlocked",
    "WorkflowCancelled",
    "RunNotFound",
    "LeaseLost",
    "NotInWorkflowError",
    "EventNotDelivered",
    "EventKeyInUse",
    "Suspension",
]


class DurableError(Exception):
    """Root of every durable_celery error."""

    def __reduce__(self) -> tuple[Any, ...]:
        # Subclasses take one message argument; keep pickling independent of __init__ signatures.
        return (_rebuild, (type(self), str(self), self.__dict__))


def _rebuild(cls: type[DurableError], message: str, state: dict[str, Any]) -> DurableError:
    err = cls.__new__(cls)
    Exception.__init__(err, message)
    err.__dict__.update(state)
    return err


class ConfigurationError(DurableError):
    """A ``durable_*`` setting is missing or invalid; the message names the setting."""


class EncodingError(DurableError, TypeError):
    """A value cannot be stored; the message names its path and type."""


class DecodingError(DurableError):
    """A stored payload is corrupt or not a durable_celery payload."""


class DecryptionError(DecodingError):
    """A payload cannot be decrypted: unknown key id, wrong key, or bound to another place."""


class UnknownWorkflowError(DurableError, LookupError):
    """No workflow is registered under this name."""


class WorkflowArgumentsError(DurableError, TypeError):
    """The arguments do not fit the workflow's signature."""


class NondeterminismError(DurableError):
    """Replay diverged from the log: the code no longer issues what the log recorded."""


class StepError(DurableError):
    """A step failed with an error that cannot be rebuilt as its own type.

    Carries the original type name, message and traceback text.
    """

    def __init__(self, type_name: str, message: str, traceback: str = "") -> None:
        super().__init__(f"{type_name}: {message}")
        self.type_name = type_name
        self.message = message
        self.traceback = traceback


class RetryableError(DurableError):
    """Raise from a step to ask for a retry, optionally after ``after`` seconds."""

    def __init__(self, message: str = "", after: float | None = None) -> None:
        super().__init__(message)
        self.after = after


class FatalError(DurableError):
    """Raise from a step (or workflow) to fail at once, without further retries."""


class WorkflowFailed(DurableError):
    """Raised by ``RunHandle.result()`` when the workflow failed with an error not rebuildable."""


class WorkflowBlocked(DurableError):
    """The run is blocked (e.g. nondeterminism): deploy a fix, then resume it."""


class WorkflowCancelled(DurableError):
    """The run was cancelled."""


class RunNotFound(DurableError, LookupError):
    """No run exists with this id."""


class LeaseLost(DurableError):
    """Another orchestrator owns this run now; this pass stops without writing."""


class NotInWorkflowError(DurableError, RuntimeError):
    """A workflow-only API was called outside a running workflow."""


class EventNotDelivered(DurableError):
    """No run waits for this event key; send with ``buffer=True`` to keep it for the next wait."""


class EventKeyInUse(DurableError):
    """Another live run already waits on this event key; use a key unique to each run."""


class Suspension(BaseException):
    """Unwinds a workflow that must wait. Never catch it in workflow code."""
