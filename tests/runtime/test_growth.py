"""A step costs the same at the thousandth step as at the tenth: O(N) per run, never O(N^2).

The bench measures this in time (per-step cost at 1000 steps against 10), on a machine whose
speed drifts between the two measurements. Here it is counted instead, so the count is the same
on every machine and every run: the lines of durable_celery executed per step, over a whole run
of a short and of a long workflow, with every mechanism of the production path on (one-hop,
speculative continuation, live workflows, event deltas). A per-step scan of the history, the
cache or the log would make the long run's figure grow with its length.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import Any

import pytest

import durable_celery
from durable_celery import Durable
from durable_celery.store import EventStore
from durable_celery.testing.local import LocalEnvironment

PACKAGE = str(Path(durable_celery.__file__).parent)
SHORT, LONG = 20, 400
#: The long run may not cost more per step than the short one, give or take what is not per
#: step (start and end of the run, spread over fewer steps in the short run: the long run's
#: figure is in fact lower).
SLACK = 1.05


def lines_run(fn: Callable[[], Any]) -> int:
    """Lines of durable_celery executed by ``fn()`` (other code is not traced line by line)."""
    count = 0

    def local(frame: FrameType, event: str, arg: Any) -> Any:
        nonlocal count
        if event == "line":
            count += 1
        return local

    def calls(frame: FrameType, event: str, arg: Any) -> Any:
        return local if frame.f_code.co_filename.startswith(PACKAGE) else None

    sys.settrace(calls)
    try:
        fn()
    finally:
        sys.settrace(None)
    return count


@pytest.mark.parametrize("execution", ["dispatch", "inline"])
def test_lines_per_step_do_not_grow_with_the_run(
    durable: Durable, store: EventStore, execution: str
) -> None:
    @durable.step(execution=execution)
    def increment(value: int) -> int:
        return value + 1

    @durable.workflow
    def count_to(n: int) -> int:
        value = 0
        for _ in range(n):
            value = increment(value)
        return value

    env = LocalEnvironment(durable, store=store, one_hop=True)

    def run(n: int) -> None:
        assert env.result(count_to.start(n)) == n

    run(SHORT)  # warm: imports, scripts loaded, caches sized
    per_step = {n: lines_run(lambda n=n: run(n)) / n for n in (SHORT, LONG)}
    assert per_step[LONG] <= SLACK * per_step[SHORT], per_step
