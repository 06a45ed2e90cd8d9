"""Running one attempt of a step and turning what happened into log entries.

Shared by inline execution (in the orchestrator's pass) and dispatched execution (in the step's
Celery task), so results are identical in every mode.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from asyncio import events as aio_events
from dataclasses import dataclass
from typing import Any

from ..codec import Codec, Place
from ..errors import EncodingError
from ..replay import events as ev
from ..replay.context import reset_context, set_context
from ..replay.events import NewEvent
from ..workflow.step import StepDefinition, StepInfo, _current_step

__all__ = ["AttemptResult", "run_attempt", "retry_key"]


@dataclass(slots=True)  # made once per attempt, read once: not frozen, which costs 0.3 us
class AttemptResult:
    """``outcome`` settles the step (completed/failed); otherwise ``retrying`` + ``delay``."""

    outcome: NewEvent | None
    retrying: NewEvent | None
    delay: float
    duration_ms: float

    @property
    def settled(self) -> bool:
        return self.outcome is not None


def retry_key(cid: str, attempt: int) -> str:
    """Append-once key of the ``step_retrying`` entry of one failed attempt."""
    return f"{cid}@{attempt}"


def _run_coroutine(coro: Any) -> Any:
    """Run an ``async def`` step to completion on a fresh event loop of its own.

    Inline, the step may be called from inside an async workflow's deterministic loop: that
    loop is set aside while the step runs, so the step gets real asyncio (I/O, clocks).
    """
    previous = aio_events._get_running_loop()
    aio_events._set_running_loop(None)
    try:
        return asyncio.run(coro)
    finally:
        aio_events._set_running_loop(previous)


def run_attempt(
    step: StepDefinition[Any, Any],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    *,
    run_id: str,
    cid: str,
    attempt: int,
    codec: Codec,
) -> AttemptResult:
    info = StepInfo(run_id=run_id, cid=cid, attempt=attempt, name=step.name)
    step_token = _current_step.set(info)
    replay_token = set_context(None)  # a step body is plain code, even when run inline
    started = time.perf_counter()
    try:
        value = step.fn(*args, **kwargs)
        if inspect.iscoroutine(value):
            value = _run_coroutine(value)
    except Exception as exc:
        error: Exception = exc
    else:
        try:
            payload = codec.encode(
                value, Place(run_id, ev.STEP_COMPLETED, cid), label=f"result of step {step.name}"
            )
        except EncodingError as exc:
            error = exc
        else:
            elapsed = (time.perf_counter() - started) * 1000
            meta = {"name": step.name, "attempt": attempt, "ms": round(elapsed, 3)}
            return AttemptResult(NewEvent(ev.STEP_COMPLETED, cid, meta, payload), None, 0, elapsed)
    finally:
        reset_context(replay_token)
        _current_step.reset(step_token)
    elapsed = (time.perf_counter() - started) * 1000
    meta = {
        "name": step.name,
        "attempt": attempt,
        "ms": round(elapsed, 3),
        "error": f"{type(error).__module__}.{type(error).__qualname__}",
    }
    if step.policy.should_retry(error, attempt):
        delay = step.policy.delay(error, attempt)
        payload = codec.encode(error, Place(run_id, ev.STEP_RETRYING, retry_key(cid, attempt)))
        meta["delay"] = round(delay, 3)
        return AttemptResult(None, NewEvent(ev.STEP_RETRYING, cid, meta, payload), delay, elapsed)
    payload = codec.encode(error, Place(run_id, ev.STEP_FAILED, cid))
    return AttemptResult(NewEvent(ev.STEP_FAILED, cid, meta, payload), None, 0, elapsed)
