"""Values a workflow may use that replay to the same thing every time."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timezone

from ..replay import events as ev
from ..replay.commands import RecordMarker
from ..replay.context import require_context

__all__ = ["WorkflowInfo", "patched", "random", "uuid4", "workflow_info"]


@dataclass(frozen=True)
class WorkflowInfo:
    run_id: str
    workflow: str
    #: 1, plus one for every ``resume`` of a blocked run.
    attempt: int
    start_time: datetime


def random() -> float:
    """A float in [0, 1) from the run's own seeded generator (same sequence on every replay)."""
    return require_context("random()").rng.random()


def uuid4() -> uuid.UUID:
    """A version-4 UUID from the run's seeded generator (same value on every replay)."""
    bits = require_context("uuid4()").rng.getrandbits(128)
    return uuid.UUID(int=bits, version=4)


def workflow_info() -> WorkflowInfo:
    ctx = require_context("workflow_info()")
    started = ctx.history[0]
    resumes = sum(1 for e in ctx.history[: max(ctx.cursor, 1)] if e.kind == ev.RUN_RESUMED)
    return WorkflowInfo(
        run_id=ctx.run_id,
        workflow=ctx.workflow,
        attempt=1 + resumes,
        start_time=datetime.fromtimestamp(started.millis / 1000, tz=timezone.utc),
    )


def patched(change_id: str) -> bool:
    """True where new code may take a new path; False while replaying a run that already
    went past this point with the old code.

    ``if patched("bigger-discount"): new() else: old()`` lets runs started before a deploy
    replay the old path while new runs take the new one. The decision is recorded (a marker),
    so a run keeps its answer forever.
    """
    ctx = require_context("patched()")
    if change_id in ctx.patches:
        return ctx.patches[change_id]
    if ctx.marker(change_id) is None and ctx.past_recorded_work:
        answer = False
    else:  # recorded before (replay matches it), or new territory (recorded now)
        ctx.issue(RecordMarker(f"p:{change_id}", name=change_id, value=True))
        answer = True
    ctx.patches[change_id] = answer
    return answer
