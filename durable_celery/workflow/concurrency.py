"""Fan-out, fan-in and races inside a workflow.

Every decision is made in log order: ``first`` returns the call whose outcome comes first in
the log, ``wait`` reports as done exactly the calls whose outcomes were delivered when its
condition was met, so a replay decides the same way however late it runs.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import timedelta
from typing import Any, Final

from ..replay.commands import StartTimer
from ..replay.context import Pending, ReplayContext, require_context
from .clock import seconds_of

__all__ = ["gather", "first", "wait", "FIRST_COMPLETED", "ALL_COMPLETED"]

FIRST_COMPLETED: Final = "FIRST_COMPLETED"
ALL_COMPLETED: Final = "ALL_COMPLETED"


def _pendings(api: str, calls: Sequence[Any]) -> tuple[ReplayContext, list[Pending]]:
    """The calls as Pending objects (a child workflow's handle stands for its completion)."""
    ctx = require_context(f"{api}()")
    pendings: list[Pending] = []
    for i, call in enumerate(calls):
        call = getattr(call, "pending", call)  # ChildHandle
        if not isinstance(call, Pending):
            raise TypeError(
                f"{api}() argument {i} is {type(call).__name__}, not a deferred call: pass "
                "step.defer(...) (not step(...), which already waits for the result) or a "
                "child workflow's handle"
            )
        pendings.append(call)
    return ctx, pendings


def gather(*calls: Any) -> list[Any]:
    """Wait for every deferred call; return their results in argument order.

    If any failed, raise the error of the one whose failure comes first in the log; the others'
    outcomes stay recorded.
    """
    ctx, calls = _pendings("gather", calls)  # type: ignore[assignment]
    ctx.block_until(lambda: all(call.done() for call in calls), ("all", [c.cid for c in calls]))
    results: dict[str, Any] = {}
    for call in sorted(calls, key=lambda c: ctx.position(c.cid)):  # log order
        results[call.cid] = call.result()
    return [results[call.cid] for call in calls]


def first(*calls: Any, cancel_losers: bool = False) -> tuple[int, Any]:
    """Wait for the first call to finish (in log order); return ``(index, result)``.

    Raises that call's error if it failed. The others keep running and their outcomes are
    recorded (never delivered twice); ``cancel_losers=True`` asks Celery to revoke them.
    """
    ctx, calls = _pendings("first", calls)  # type: ignore[assignment]
    if not calls:
        raise ValueError("first() needs at least one deferred call")
    ctx.block_until(lambda: any(call.done() for call in calls), ("any", [c.cid for c in calls]))
    index = min(range(len(calls)), key=lambda i: ctx.position(calls[i].cid))
    if cancel_losers and not ctx.past_recorded_work:  # revoke once, not again on every replay
        ctx.cancel([c.cid for i, c in enumerate(calls) if i != index and not c.done()])
    return index, calls[index].result()


def wait(
    calls: Iterable[Any],
    return_when: str = ALL_COMPLETED,
    timeout: float | timedelta | None = None,
) -> tuple[list[Pending], list[Pending]]:
    """Wait like ``concurrent.futures.wait``; return ``(done, pending)`` in argument order."""
    ctx, pending_calls = _pendings("wait", list(calls))
    if return_when not in (FIRST_COMPLETED, ALL_COMPLETED):
        raise ValueError("wait(return_when=...) takes FIRST_COMPLETED or ALL_COMPLETED")
    if return_when == FIRST_COMPLETED:

        def ready() -> bool:
            return any(c.done() for c in pending_calls)
    else:

        def ready() -> bool:
            return all(c.done() for c in pending_calls)

    if timeout is not None and not ready():
        seconds = seconds_of(timeout, "wait(timeout=...)")
        deadline = ctx.issue(StartTimer(ctx.next_cid(StartTimer.prefix), seconds=seconds))
        cids = [c.cid for c in pending_calls] + [deadline.cid]
        ctx.block_until(lambda: ready() or deadline.done(), ("any", cids))
    else:
        mode = "any" if return_when == FIRST_COMPLETED else "all"
        ctx.block_until(ready, (mode, [c.cid for c in pending_calls]))
    done = [c for c in pending_calls if c.done()]
    return done, [c for c in pending_calls if not c.done()]
