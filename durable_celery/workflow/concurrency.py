"""Fan-out and fan-in inside a workflow."""

from __future__ import annotations

from typing import Any

from ..replay.context import Pending, require_context

__all__ = ["gather"]


def gather(*calls: Pending) -> list[Any]:
    """Wait for every deferred call; return their results in argument order.

    If any failed, raise the error of the one whose failure comes first in the log; the others'
    outcomes stay recorded.
    """
    ctx = require_context("gather()")
    for i, call in enumerate(calls):
        if not isinstance(call, Pending):
            raise TypeError(
                f"gather() argument {i} is {type(call).__name__}, not a deferred call: pass "
                "step.defer(...) (not step(...), which already waits for the result)"
            )
    ctx.block_until(lambda: all(call.done() for call in calls))
    failed_first = sorted(calls, key=lambda c: ctx.position(c.cid))
    results: dict[str, Any] = {}
    for call in failed_first:  # log order, so the first failure in the log is the one raised
        results[call.cid] = call.result()
    return [results[call.cid] for call in calls]
