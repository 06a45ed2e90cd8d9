"""``RunHandle``: a run's id and what any process can ask about it (no worker needed)."""

from __future__ import annotations

from typing import Any, Protocol

__all__ = ["RunHandle", "RunClient"]


class RunClient(Protocol):
    def run_status(self, run_id: str) -> str: ...

    def run_result(self, run_id: str, timeout: float | None) -> Any: ...

    def cancel_run(self, run_id: str, reason: str) -> bool: ...

    def resume_run(self, run_id: str) -> bool: ...


class RunHandle:
    """A handle on one run. ``result()`` returns the workflow's value or raises its error."""

    __slots__ = ("_client", "created", "run_id", "workflow")

    def __init__(self, run_id: str, workflow: str, client: RunClient, *, created: bool = True):
        self.run_id = run_id
        self.workflow = workflow
        self._client = client
        #: False when ``start()`` found an existing run with this id.
        self.created = created

    def status(self) -> str:
        """``running`` | ``completed`` | ``failed`` | ``blocked`` | ``cancelled``."""
        return self._client.run_status(self.run_id)

    def result(self, timeout: float | None = None) -> Any:
        """Wait for the run to finish; return its value or raise its error.

        Raises ``TimeoutError`` after ``timeout`` seconds, ``WorkflowBlocked`` if the run is
        blocked (fix the code, then ``resume()``), ``WorkflowCancelled`` if it was cancelled.
        """
        return self._client.run_result(self.run_id, timeout)

    def cancel(self, reason: str = "") -> bool:
        return self._client.cancel_run(self.run_id, reason)

    def resume(self) -> bool:
        """Continue a blocked run (after deploying fixed code)."""
        return self._client.resume_run(self.run_id)

    def __repr__(self) -> str:
        return f"<RunHandle {self.workflow} {self.run_id}>"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, RunHandle) and other.run_id == self.run_id

    def __hash__(self) -> int:
        return hash(self.run_id)
