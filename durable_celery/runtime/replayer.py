"""Replay a recorded run against the code deployed now, without writing anything.

The check a team runs before a deploy (``celery durable replay RUN_ID``) and the engine of the
saved-history tests: a run whose log the current code cannot follow is reported with the
NondeterminismError it would raise, and the log is never touched.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..codec import Codec, Place
from ..replay import events as ev
from ..replay.commands import Command
from ..replay.engine import WorkflowExecution
from ..replay.events import Event
from .registry import Registry

if TYPE_CHECKING:
    from .core import Runtime

__all__ = ["ReplayReport", "replay_history", "replay_run"]


@dataclass
class ReplayReport:
    run_id: str
    workflow: str
    #: completed | failed | waiting (the log ends before the workflow does) | diverged
    outcome: str
    value: Any = None
    error: BaseException | None = None
    #: What the code would do next when the log ends first.
    next_commands: list[str] = field(default_factory=list)
    #: For finished runs: whether the replayed outcome matches the recorded one.
    matches_record: bool | None = None

    @property
    def ok(self) -> bool:
        return self.outcome != "diverged" and self.matches_record is not False


class _ReadOnlyHost:
    def __init__(self, codec: Codec, run_id: str) -> None:
        self.codec = codec
        self.run_id = run_id
        self.would_issue: list[Command] = []

    def fingerprint(self, value: Any, label: str) -> tuple[str, bytes]:
        return self.codec.fingerprint_packed(value, label=label)

    def outcome(self, event: Event) -> Any:
        if event.payload is None:
            return None
        value = self.codec.decode(event.payload, Place(self.run_id, event.kind, event.cid))
        # As PassHost.outcome: a failed step, and any outcome recorded as an error (a child
        # workflow's failure, EventKeyInUse), raise where the workflow waits on it.
        if event.kind == ev.STEP_FAILED or (
            event.meta.get("error") and isinstance(value, BaseException)
        ):
            raise value
        return value

    def on_blocked(self, commands: Sequence[Command]) -> Sequence[Event]:
        self.would_issue.extend(commands)
        return []


def replay_history(
    history: list[Event], registry: Registry, codec: Codec, run_id: str | None = None
) -> ReplayReport:
    started = history[0]
    run_id = run_id or "replay"
    workflow = registry.workflow(str(started.meta.get("workflow")))
    inputs = codec.decode(started.payload or b"", Place(run_id, ev.RUN_STARTED, ""))
    host = _ReadOnlyHost(codec, run_id)
    recorded = [e for e in history if e.kind not in ev.TERMINAL_KINDS]
    execution = WorkflowExecution(
        workflow.fn,
        inputs["args"],
        inputs["kwargs"],
        run_id=run_id,
        workflow=workflow.name,
        history=recorded,
        host=host,
        live=False,
    )
    result = execution.start()
    report = ReplayReport(
        run_id,
        workflow.name,
        {
            "completed": "completed",
            "failed": "failed",
            "suspended": "waiting",
            "blocked": "diverged",
        }[result.status],
        value=result.value,
        error=result.error,
    )
    report.next_commands = [c.describe() for c in host.would_issue]
    final = next((e for e in reversed(history) if e.kind in ev.TERMINAL_KINDS), None)
    if final is not None and final.kind != ev.RUN_CANCELLED:
        report.matches_record = _same_outcome(final, report, codec, run_id)
    return report


def replay_run(runtime: Runtime, run_id: str) -> ReplayReport:
    history = runtime.store.read_since(run_id, None)
    if not history:
        from ..errors import RunNotFound

        raise RunNotFound(f"no run with id {run_id!r}")
    return replay_history(history, runtime.registry, runtime.codec, run_id)


def _same_outcome(final: Event, report: ReplayReport, codec: Codec, run_id: str) -> bool:
    value = codec.decode(final.payload or b"", Place(run_id, final.kind, ""))
    if final.kind == ev.RUN_COMPLETED:
        return report.outcome == "completed" and bool(value == report.value)
    return report.outcome == "failed" and type(value) is type(report.error)
