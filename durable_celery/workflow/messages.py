"""Waiting for the outside world: external events by key, and signals sent to one run."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from ..replay.commands import AwaitEvent, StartTimer
from ..replay.context import require_context
from .clock import seconds_of

__all__ = ["wait_for_event", "receive"]


def wait_for_event(key: str, timeout: float | timedelta | None = None) -> Any:
    """Suspend until ``durable.send_event(key, payload)``; return the payload.

    Returns ``None`` when ``timeout`` passes first (an event arriving later is not delivered).
    Only one live run may wait on a key at a time: a second one gets ``EventKeyInUse`` here.
    """
    ctx = require_context("wait_for_event()")
    if not isinstance(key, str) or not key:
        raise TypeError("wait_for_event() needs a non-empty string key")
    seconds = None if timeout is None else seconds_of(timeout, "wait_for_event(timeout=...)")
    cid = ctx.next_cid(AwaitEvent.prefix)
    pending = ctx.issue(AwaitEvent(cid, key=key, timeout=seconds))
    return pending if ctx.loop is not None else pending.result()  # async: awaitable


def receive(name: str, timeout: float | timedelta | None = None) -> Any:
    """The next signal ``name`` sent to this run (``durable.signal(run_id, name, payload)``).

    Signals are kept in the run's log in the order they were sent, so one sent before the
    workflow waits is never lost. Returns ``None`` if ``timeout`` passes first; that signal then
    stays for the next ``receive``.
    """
    ctx = require_context("receive()")
    if ctx.loop is not None:
        raise TypeError(
            "receive() is for sync workflows; in an async workflow wait for an external event "
            "with `await wait_for_event(key)` instead"
        )
    if not isinstance(name, str) or not name:
        raise TypeError("receive() needs a non-empty signal name")
    seconds = None if timeout is None else seconds_of(timeout, "receive(timeout=...)")

    def arrived() -> bool:
        return ctx.visible(ctx.next_signal_position(name))

    if not arrived() and seconds is not None:
        deadline = ctx.issue(StartTimer(ctx.next_cid(StartTimer.prefix), seconds=seconds))
        ctx.block_until(lambda: arrived() or deadline.done())
        position = ctx.next_signal_position(name)
        if not ctx.visible(position) or ctx.position(deadline.cid) < (position or 0):
            return None
    else:
        ctx.block_until(arrived)
    return ctx.host.outcome(ctx.take_signal(name))
