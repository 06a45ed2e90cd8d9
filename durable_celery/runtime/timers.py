"""Durable timers: deadlines live in Redis (server time), any worker fires them.

Firing is *act, then remove*: a timer claimed by a worker that dies before removing it comes
back after the claim expires, and acting twice is harmless (a step attempt is at-least-once and
its outcome is recorded once; timer outcomes are append-once).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from ..errors import RunNotFound
from ..replay import events as ev
from ..replay.events import NewEvent
from ..store.base import DueTimer
from ..store.entries import scheduled_key
from .starter import EVENT_TIMEOUT, TIMER

if TYPE_CHECKING:
    from .core import Runtime

__all__ = ["TimerService"]

log = logging.getLogger("durable_celery.timers")

RETRY = "retry"


class TimerService:
    def __init__(self, runtime: Runtime) -> None:
        self.rt = runtime

    def schedule_retry(
        self,
        step: str,
        run_id: str,
        cid: str,
        attempt: int,
        delay: float,
        entry_id: str | None,
        queue: str | None = None,
    ) -> None:
        data = {"step": step, "attempt": attempt, "entry": entry_id or "", "queue": queue or ""}
        self.rt.store.add_timer(RETRY, run_id, f"{cid}@{attempt}", int(delay * 1000), data)

    def fire_due(self, limit: int = 100) -> int:
        """Fire every due timer this call can claim; return how many were fired."""
        claim_ms = int(max(self.rt.config.lease_timeout, 5.0) * 1000)
        due = self.rt.store.claim_due_timers(claim_ms, limit)
        for timer in due:
            try:
                self._fire(timer)
            except Exception:  # leave it claimed: it comes back when the claim expires
                log.exception("timer %s failed to fire; it will be retried", timer.member)
                continue
            self.rt.store.remove_timer(timer.member)
        return len(due)

    def _fire(self, timer: DueTimer) -> None:
        try:
            if timer.kind == RETRY:
                self._fire_retry(timer)
            elif timer.kind == TIMER:
                self._fire_timer(timer)
            elif timer.kind == EVENT_TIMEOUT:
                self.rt.waits.time_out(timer.run_id, timer.cid, str(timer.data.get("key")))
            else:
                log.error("unknown timer kind %r (%s); dropping it", timer.kind, timer.member)
        except RunNotFound:
            log.info("timer %s: its run no longer exists; dropping it", timer.member)

    def _fire_timer(self, timer: DueTimer) -> None:
        record = self.rt.store.get_run(timer.run_id)
        if record is None or record.status in ("completed", "failed", "cancelled"):
            return  # a race's losing timer, or a run that ended otherwise
        event = NewEvent(ev.TIMER_FIRED, timer.cid, {})
        recorded = self.rt.store.record_outcome(timer.run_id, timer.cid, event, wake=True)
        if recorded.wake:
            self.rt.dispatcher.wake(timer.run_id)

    def _fire_retry(self, timer: DueTimer) -> None:
        rt = self.rt
        cid = timer.cid.split("@", 1)[0]
        if rt.store.get_run(timer.run_id) is None or rt.store.outcome_id(timer.run_id, cid):
            return  # the run is gone, or the step settled meanwhile
        step = rt.registry.step(str(timer.data["step"]))
        entry_id = str(timer.data.get("entry") or "")
        if not entry_id:
            entry_id = self._scheduled_entry(timer.run_id, cid)
        queue = str(timer.data.get("queue") or "") or None
        rt.dispatcher.send_step(
            step, timer.run_id, cid, entry_id, int(timer.data["attempt"]), queue
        )

    def _scheduled_entry(self, run_id: str, cid: str) -> str:
        found = self.rt.store.outcome_id(run_id, scheduled_key(cid))
        if found:
            return found
        # Logs recorded before scheduling had an append-once key: look the entry up.
        for event in self.rt.store.read_since(run_id, None):
            if event.cid == cid and event.kind == "step_scheduled":
                return event.entry_id
        raise LookupError(f"run {run_id}: no scheduled entry for step {cid}")
