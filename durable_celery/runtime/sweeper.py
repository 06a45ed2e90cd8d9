"""The recovery sweep: re-drive runs whose wake was lost, and resend steps whose message was.

A run's wake flag stays set from the moment an outcome lands until a pass has seen the whole log.
If the flag has been set for longer than a lease, and no pass holds the lease, the pass that was
meant to run is gone (its message lost with a broker restart, or its worker killed before the
message was acknowledged and the broker forgot it): the sweep enqueues a new one. Every worker
may sweep; an extra pass is harmless (the lease keeps passes of one run apart).

A run that waits on dispatched steps and has recorded nothing for ``lost_message_timeout`` may
wait on a message that is gone: Celery's Redis transport pops a message from the queue before it
records it as unacknowledged, so a worker killed in between takes it along. The sweep then sends
the run's unsettled steps again, once per such period whoever sweeps (``claim_redelivery``).
A step that was only slow runs twice, as Redis redelivers an unacknowledged message after its
``visibility_timeout`` anyway; its outcome is recorded once.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from ..replay import events as ev

if TYPE_CHECKING:
    from .core import Runtime

__all__ = ["RecoverySweep"]

log = logging.getLogger("durable_celery.recovery")


class RecoverySweep:
    def __init__(self, runtime: Runtime) -> None:
        self.rt = runtime

    def sweep(self, limit: int = 1000) -> list[str]:
        """Enqueue a pass for each stalled run among the ``limit`` newest running ones."""
        rt = self.rt
        stale_ms = int(rt.config.lease_timeout * 1000)
        now = rt.store.now_ms()
        redriven: list[str] = []
        lost_ms = int(float(rt.config.lost_message_timeout or 0) * 1000)
        for record in rt.store.list_runs(status="running", limit=limit):
            if now - record.updated_ms < min(stale_ms, lost_ms or stale_ms):
                continue
            if rt.store.lease_ttl_ms(record.run_id):
                continue  # a pass is on it
            if rt.store.wake_pending(record.run_id):
                if now - record.updated_ms >= stale_ms:
                    log.warning("run %s: its wake was lost; driving it again", record.run_id)
                    rt.dispatcher.wake(record.run_id)
                    redriven.append(record.run_id)
            elif lost_ms and rt.store.claim_redelivery(record.run_id, lost_ms):
                self._resend_steps(record.run_id)
        return redriven

    def _resend_steps(self, run_id: str) -> None:
        history = self.rt.store.read_since(run_id, None)
        settled = {e.cid for e in history if e.kind in ev.OUTCOME_KINDS}
        pending = [e.cid for e in history if e.kind == ev.STEP_SCHEDULED and e.cid not in settled]
        if pending:
            log.warning(
                "run %s: nothing recorded for %ss; sending its pending steps %s again",
                run_id,
                self.rt.config.lost_message_timeout,
                ", ".join(pending),
            )
            self.rt.starter.recover(run_id, history, pending)
