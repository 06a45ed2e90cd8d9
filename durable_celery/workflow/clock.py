"""Time inside a workflow: durable sleeps and the log's clock.

Deadlines live in Redis and use the Redis server's clock, so workers' clock skew never fires a
timer early nor stalls it. ``now()`` is the time the log recorded for the last entry delivered to
the workflow: it moves forward with the log and replays to the same value.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from numbers import Real
from typing import Any

from ..replay.commands import StartTimer
from ..replay.context import Pending, require_context

__all__ = ["now", "sleep", "sleep_until", "timer", "seconds_of", "StartTimerUntil"]


@dataclass(frozen=True)
class StartTimerUntil(StartTimer):
    """A timer due at an instant (``sleep_until``) rather than after a duration.

    ``seconds`` is counted from ``now()``, the log's time, which may be well before the pass
    that registers the timer runs (a run started while no worker was up): the deadline is
    ``until_ms`` whenever it is registered, and its entry records ``until_ms`` for a restart
    after a crash. Replays the same as a ``StartTimer``.
    """

    until_ms: int = 0


def seconds_of(value: Any, api: str) -> float:
    """Validate a duration given as seconds or a timedelta; refuse negatives and NaN."""
    if isinstance(value, timedelta):
        seconds = value.total_seconds()
    elif isinstance(value, Real) and not isinstance(value, bool):
        seconds = float(value)
    else:
        raise TypeError(
            f"{api} takes seconds (int or float) or a datetime.timedelta, not "
            f"{type(value).__name__}"
        )
    if math.isnan(seconds) or math.isinf(seconds):
        raise ValueError(f"{api}: {value!r} is not a finite duration")
    if seconds < 0:
        raise ValueError(f"{api}: a duration cannot be negative (got {seconds:g}s)")
    return seconds


def timer(seconds: float | timedelta) -> Pending:
    """A durable timer to wait on or race (``first(step.defer(x), timer(60))``)."""
    ctx = require_context("timer()")
    duration = seconds_of(seconds, "timer()")
    return ctx.issue(StartTimer(ctx.next_cid(StartTimer.prefix), seconds=duration))


def sleep(seconds: float | timedelta) -> Any:
    """Suspend the workflow for ``seconds`` (or a timedelta); no worker is held meanwhile.

    In an async workflow, ``await sleep(s)`` (or ``await asyncio.sleep(s)``).
    """
    ctx = require_context("sleep()")
    duration = seconds_of(seconds, "sleep()")
    if duration == 0:
        return _done(ctx)
    pending = ctx.issue(StartTimer(ctx.next_cid(StartTimer.prefix), seconds=duration))
    return pending if ctx.loop is not None else pending.result()


def _done(ctx: Any) -> Any:
    if ctx.loop is None:
        return None
    future = ctx.loop.create_future()
    future.set_result(None)
    return future


def sleep_until(when: datetime) -> Any:
    """Suspend until ``when``, an aware datetime.

    Naive datetimes are refused rather than guessed: a worker's local timezone is not the
    workflow's, and guessing would fire at a different instant on different machines.
    """
    ctx = require_context("sleep_until()")
    if not isinstance(when, datetime):
        raise TypeError(f"sleep_until() takes a datetime, not {type(when).__name__}")
    if when.tzinfo is None or when.utcoffset() is None:
        raise ValueError(
            "sleep_until() needs an aware datetime (e.g. datetime(2030, 1, 1, "
            "tzinfo=timezone.utc)); a naive one has no fixed instant"
        )
    remaining = (when - now()).total_seconds()
    if remaining <= 0:
        return _done(ctx)
    until_ms = math.ceil(when.timestamp() * 1000)
    cid = ctx.next_cid(StartTimer.prefix)
    pending = ctx.issue(StartTimerUntil(cid, seconds=remaining, until_ms=until_ms))
    return pending if ctx.loop is not None else pending.result()


def now() -> datetime:
    """The workflow's current time (UTC, aware), as recorded in the log."""
    ctx = require_context("now()")
    return datetime.fromtimestamp(ctx.now_ms() / 1000, tz=timezone.utc)
