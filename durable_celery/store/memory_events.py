"""External events in memory: hooks, the event buffer and dedupe ids (mixed into the store).

Same semantics as :mod:`.redis_events`; expiries follow the store's injected clock (the stand-in
for the Redis server clock), so tests can skip time instead of sleeping.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from . import keys
from .base import check_owner, check_ttl

__all__ = ["MemoryExternalEvents"]


class MemoryExternalEvents:
    """The external-event half of :class:`~.memory.MemoryEventStore`; shares its one lock."""

    _cond: threading.Condition
    _clock: Callable[[], float]

    def __init__(self) -> None:
        super().__init__()
        self._hooks: dict[str, str] = {}
        #: Per key, oldest first: [expires ms, payload, owner that claimed it or ""].
        self._buffers: dict[str, list[list[Any]]] = {}
        self._dedupe: dict[tuple[str, str], int] = {}  # (key, id) -> expires ms

    def _now(self) -> int:
        return int(self._clock() * 1000)

    # -- hooks ------------------------------------------------------------------------------------
    def register_hook(self, key: str, owner: str) -> str | None:
        keys.validate_event_key(key)
        check_owner(owner)
        with self._cond:
            current = self._hooks.setdefault(key, owner)
            return None if current == owner else current

    def replace_hook(self, key: str, expected: str, owner: str) -> bool:
        keys.validate_event_key(key)
        check_owner(owner)
        with self._cond:
            if self._hooks.get(key) != expected:
                return False
            self._hooks[key] = owner
            return True

    def get_hook(self, key: str) -> str | None:
        keys.validate_event_key(key)
        with self._cond:
            return self._hooks.get(key)

    def delete_hook(self, key: str, owner: str) -> bool:
        keys.validate_event_key(key)
        with self._cond:
            if self._hooks.get(key) != owner:
                return False
            del self._hooks[key]
            return True

    # -- buffered events --------------------------------------------------------------------------
    def push_buffered_event(self, key: str, blob: bytes, ttl_ms: int) -> None:
        keys.validate_event_key(key)
        check_ttl(ttl_ms, "a buffered event ttl")
        item = [self._now() + ttl_ms, bytes(blob), ""]
        with self._cond:
            self._buffers.setdefault(key, []).append(item)

    def claim_buffered_event(self, key: str, owner: str) -> bytes | None:
        keys.validate_event_key(key)
        check_owner(owner)
        with self._cond:
            now = self._now()
            buffer = [item for item in self._buffers.pop(key, []) if item[0] > now]
            if buffer:
                self._buffers[key] = buffer
            mine = next((item for item in buffer if item[2] == owner), None)
            if mine is None:
                mine = next((item for item in buffer if not item[2]), None)
                if mine is None:
                    return None
                mine[2] = owner
            return bytes(mine[1])

    def settle_buffered_event(self, key: str, owner: str) -> bool:
        keys.validate_event_key(key)
        check_owner(owner)
        with self._cond:
            buffer = self._buffers.get(key, [])
            for i, item in enumerate(buffer):
                if item[2] == owner:
                    del buffer[i]
                    if not buffer:
                        del self._buffers[key]
                    return True
            return False

    # -- dedupe -----------------------------------------------------------------------------------
    def claim_dedupe(self, key: str, dedupe_id: str, ttl_ms: int) -> bool:
        keys.dedupe("memory", key, dedupe_id)  # the same checks as the Redis store
        check_ttl(ttl_ms, "a dedupe ttl")
        with self._cond:
            now = self._now()
            if self._dedupe.get((key, dedupe_id), now) > now:
                return False
            self._dedupe[(key, dedupe_id)] = now + ttl_ms
            return True

    def release_dedupe(self, key: str, dedupe_id: str) -> None:
        keys.dedupe("memory", key, dedupe_id)
        with self._cond:
            self._dedupe.pop((key, dedupe_id), None)
