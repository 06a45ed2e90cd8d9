"""The recovery sweep: re-drive runs whose wake was lost.

A run's wake flag stays set from the moment an outcome lands until a pass has seen the whole log.
If the flag has been set for longer than a lease, and no pass holds the lease, the pass that was
meant to run is gone (its message lost with a broker restart, or its worker killed before the
message was acknowledged and the broker forgot it): the sweep enqueues a new one. Every worker
may sweep; an extra pass is harmless (the lease keeps passes of one run apart).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

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
        for record in rt.store.list_runs(status="running", limit=limit):
            if now - record.updated_ms < stale_ms:
                continue
            if not rt.store.wake_pending(record.run_id) or rt.store.lease_ttl_ms(record.run_id):
                continue
            log.warning("run %s: its wake was lost; driving it again", record.run_id)
            rt.dispatcher.wake(record.run_id)
            redriven.append(record.run_id)
        return redriven
