"""Starting runs and asking about them, from any process (no worker needed)."""

from __future__ import annotations

import time
import uuid
from typing import TYPE_CHECKING, Any

from ..codec import Place
from ..errors import (
    DurableError,
    EncodingError,
    RunNotFound,
    WorkflowBlocked,
    WorkflowCancelled,
)
from ..replay import events as ev
from ..replay.events import Event, NewEvent
from ..workflow.definition import WorkflowDefinition
from ..workflow.handle import RunHandle

if TYPE_CHECKING:
    from .core import Runtime

__all__ = ["RunClientImpl"]

_TERMINAL = ("completed", "failed", "cancelled")
_FINAL_KINDS = frozenset({ev.RUN_COMPLETED, ev.RUN_FAILED, ev.RUN_CANCELLED, ev.RUN_BLOCKED})


class RunClientImpl:
    def __init__(self, runtime: Runtime) -> None:
        self.rt = runtime

    # -- starting ---------------------------------------------------------------------------------
    def start_run(
        self,
        workflow: WorkflowDefinition[Any, Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        run_id: str | None,
    ) -> RunHandle:
        rt = self.rt
        rt.registry.workflow(workflow.name)  # only registered workflows can be replayed
        workflow.bind(args, kwargs)
        run_id = run_id or uuid.uuid4().hex
        payload = self._encode_input(workflow, run_id, args, kwargs)
        started = NewEvent(
            ev.RUN_STARTED, "", {"workflow": workflow.name, "code": workflow.code_hash}, payload
        )
        if rt.store.create_run(run_id, workflow.name, started, {}):
            rt.dispatcher.wake(run_id)
            return RunHandle(run_id, workflow.name, self, created=True)
        existing = rt.store.get_run(run_id)
        if existing is not None and existing.workflow != workflow.name:
            raise DurableError(
                f"run id {run_id!r} is already used by a run of workflow {existing.workflow!r}; "
                f"choose another run_id for {workflow.name!r}"
            )
        return RunHandle(run_id, workflow.name, self, created=False)

    def start_by_name(
        self, name: str, args: tuple[Any, ...], kwargs: dict[str, Any], run_id: str | None = None
    ) -> RunHandle:
        return self.start_run(self.rt.registry.workflow(name), args, kwargs, run_id)

    def _encode_input(
        self,
        workflow: WorkflowDefinition[Any, Any],
        run_id: str,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> bytes:
        codec, place = self.rt.codec, Place(run_id, ev.RUN_STARTED, "")
        try:
            return codec.encode(
                {"args": args, "kwargs": kwargs}, place, label=f"{workflow.name}(...)"
            )
        except EncodingError:
            # Cold path: name the parameter that cannot be stored.
            bound = workflow.signature.bind(*args, **kwargs)
            for param, value in bound.arguments.items():
                codec.pack(value, label=f"{workflow.name}({param}=...)")
            raise

    # -- asking -----------------------------------------------------------------------------------
    def run_status(self, run_id: str) -> str:
        record = self.rt.store.get_run(run_id)
        if record is None:
            raise RunNotFound(
                f"no run with id {run_id!r} (it never existed, or its retention ended)"
            )
        return record.status

    def run_result(self, run_id: str, timeout: float | None) -> Any:
        """Wait for the run's final entry by blocking reads of its log (XREAD BLOCK on Redis):
        the caller wakes as soon as the entry lands, without polling delays."""
        deadline = None if timeout is None else time.monotonic() + timeout
        status = self.run_status(run_id)
        tail = self.rt.store.read_last(run_id, 1)
        after = tail[-1].entry_id if tail else None
        if tail and tail[-1].kind in _FINAL_KINDS:
            status = self.run_status(run_id)  # it landed between the two reads: do not block
        while status not in _TERMINAL and status != "blocked":
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                raise TimeoutError(
                    f"run {run_id} did not finish within {timeout}s (status {status})"
                )
            wait_ms = 1000 if remaining is None else max(1, int(min(remaining, 1.0) * 1000))
            new = self.rt.store.read_blocking(run_id, after, wait_ms)
            if new:
                after = new[-1].entry_id
            if not new or any(e.kind in _FINAL_KINDS for e in new):
                status = self.run_status(run_id)
        return self._outcome(run_id, status)

    def _outcome(self, run_id: str, status: str) -> Any:
        rt = self.rt
        last = self._last_entry(
            run_id, (ev.RUN_COMPLETED, ev.RUN_FAILED, ev.RUN_BLOCKED, ev.RUN_CANCELLED)
        )
        if status == "blocked":
            raise WorkflowBlocked(
                f"run {run_id} is blocked: {last.meta.get('error') if last else '?'} "
                "(deploy a fix, then resume it: `celery durable resume` or handle.resume())"
            )
        if status == "cancelled":
            raise WorkflowCancelled(f"run {run_id} was cancelled")
        if last is None:
            raise DurableError(f"run {run_id} is {status} but its log has no final entry")
        value = rt.codec.decode(last.payload or b"", Place(run_id, last.kind, ""))
        if last.kind == ev.RUN_FAILED:
            raise value
        return value

    def _last_entry(self, run_id: str, kinds: tuple[str, ...]) -> Event | None:
        tail = self.rt.store.read_last(run_id, 1)
        if tail and tail[-1].kind in kinds:
            return tail[-1]  # the usual case: the final entry is the last one
        for event in reversed(self.rt.store.read_since(run_id, None)):
            if event.kind in kinds:
                return event
        return None

    def history(self, run_id: str) -> list[Event]:
        return self.rt.store.read_since(run_id, None)

    # -- messages ---------------------------------------------------------------------------------
    def send_event(
        self,
        key: str,
        payload: Any = None,
        *,
        dedupe_id: str | None = None,
        buffer: bool = False,
        buffer_ttl: float = 86400.0,
    ) -> bool:
        return self.rt.waits.send(
            key, payload, dedupe_id=dedupe_id, buffer=buffer, buffer_ttl=buffer_ttl
        )

    def signal(
        self, run_id: str, name: str, payload: Any = None, *, dedupe_id: str | None = None
    ) -> bool:
        """Append a signal to the run's log (kept in order until ``receive`` takes it)."""
        if not isinstance(name, str) or not name:
            raise TypeError("signal() needs a non-empty signal name")
        status = self.run_status(run_id)
        if status in _TERMINAL:
            raise DurableError(f"run {run_id} is {status}; it cannot receive signals")
        key = f"sig:{dedupe_id if dedupe_id is not None else uuid.uuid4().hex}"
        blob = self.rt.codec.encode(
            payload, Place(run_id, ev.SIGNAL_RECEIVED, key), label=f"signal {name!r} payload"
        )
        event = NewEvent(ev.SIGNAL_RECEIVED, key, {"name": name}, blob)
        recorded = self.rt.store.record_outcome(run_id, key, event, wake=True, force=True)
        if recorded.wake:
            self.rt.dispatcher.wake(run_id)
        return recorded.created

    # -- control ----------------------------------------------------------------------------------
    def cancel_run(self, run_id: str, reason: str = "") -> bool:
        status = self.run_status(run_id)
        if status in _TERMINAL:
            return False
        event = NewEvent(ev.RUN_CANCEL_REQUESTED, "", {"reason": reason})
        recorded = self.rt.store.record_outcome(run_id, "cancel", event, wake=True, force=True)
        if recorded.wake:
            self.rt.dispatcher.wake(run_id)
        return recorded.created

    def resume_run(self, run_id: str) -> bool:
        """Continue a blocked run with the code deployed now. False if it was not blocked."""
        if self.run_status(run_id) != "blocked":
            return False
        blocked = self._last_entry(run_id, (ev.RUN_BLOCKED,))
        key = f"resume@{blocked.entry_id if blocked else 'none'}"
        # Status first: the pass this wakes may block the run again, and must have the last word.
        self.rt.store.set_status(run_id, "running")
        recorded = self.rt.store.record_outcome(
            run_id, key, NewEvent(ev.RUN_RESUMED, "", {}), wake=True, force=True
        )
        if recorded.wake:
            self.rt.dispatcher.wake(run_id)
        return recorded.created
