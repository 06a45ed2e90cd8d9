"""Durable timers in memory (mixed into the store): the Redis timer zset's semantics, with
deadlines on the store's injected clock."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from . import keys
from .base import DueTimer
from .entries import decode_due, encode_timer

__all__ = ["MemoryTimers"]


class MemoryTimers:
    """The timer half of :class:`~.memory.MemoryEventStore`; shares its one lock."""

    _cond: threading.Condition
    _clock: Callable[[], float]

    def __init__(self) -> None:
        super().__init__()
        self._timers: dict[str, int] = {}  # member -> deadline ms

    def add_timer(
        self, kind: str, run_id: str, cid: str, delay_ms: int, data: dict[str, Any]
    ) -> int:
        member = encode_timer(kind, keys.validate_run_id(run_id), cid, data)
        with self._cond:
            deadline = int(self._clock() * 1000) + max(int(delay_ms), 0)
            return self._timers.setdefault(member, deadline)

    def claim_due_timers(self, claim_ms: int, limit: int = 100) -> list[DueTimer]:
        with self._cond:
            now = int(self._clock() * 1000)
            # ZRANGEBYSCORE order: score, then member bytes.
            due = sorted(
                (m for m, deadline in self._timers.items() if deadline <= now),
                key=lambda m: (self._timers[m], m.encode()),
            )[: max(limit, 0)]
            for member in due:
                self._timers[member] = now + int(claim_ms)
        return decode_due(due, self.remove_timer)

    def remove_timer(self, member: str) -> None:
        with self._cond:
            self._timers.pop(member, None)
