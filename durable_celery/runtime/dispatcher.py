"""How the runtime reaches workers. Implemented with Celery in ``integration/``."""

from __future__ import annotations

from typing import Any, Protocol

from ..workflow.step import StepDefinition

__all__ = ["Dispatcher"]


class Dispatcher(Protocol):
    #: Whether :meth:`send_step` takes ``payload`` (a pass then sends small steps first).
    carries_input: bool

    def send_step(
        self,
        step: StepDefinition[Any, Any],
        run_id: str,
        cid: str,
        entry_id: str,
        attempt: int,
        queue: str | None = None,
        payload: bytes | None = None,
        identity: str | None = None,
    ) -> None:
        """Send one attempt of a step as a Celery task: ids, and the encoded input when
        ``payload`` is given (else the step reads it from the log), with ``identity``, what the
        step is called for (``<name>:<argument hash>``)."""

    def wake(self, run_id: str, countdown: float | None = None) -> None:
        """Enqueue an orchestrator pass for the run."""

    def consumes(self, step: StepDefinition[Any, Any]) -> bool:
        """True when this process is a worker consuming the step's queue (``auto`` inlines)."""
