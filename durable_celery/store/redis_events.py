"""External events on Redis: hooks, the event buffer and dedupe ids (mixed into the store).

Every key here is global (``<prefix>:hook:<key>``...; see :mod:`.keys`) and every operation
touches exactly one key, so on Redis Cluster each may live on any shard. Buffered items expire
on the Redis server clock, which all workers share.
"""

from __future__ import annotations

from typing import Any

from . import keys
from .base import check_owner, check_ttl
from .scripts import Scripts

__all__ = ["RedisExternalEvents"]


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


class RedisExternalEvents:
    """The external-event half of :class:`~.redis.RedisEventStore`."""

    prefix: str
    _r: Any
    _scripts: Scripts

    # -- hooks ------------------------------------------------------------------------------------
    def register_hook(self, key: str, owner: str) -> str | None:
        check_owner(owner)
        current = self._scripts.register_hook(keys=[keys.hook(self.prefix, key)], args=[owner])
        if current is None or _text(current) == owner:
            return None
        return _text(current)

    def replace_hook(self, key: str, expected: str, owner: str) -> bool:
        check_owner(owner)
        hook = keys.hook(self.prefix, key)
        return bool(self._scripts.replace_hook(keys=[hook], args=[expected, owner]) == 1)

    def get_hook(self, key: str) -> str | None:
        value = self._r.get(keys.hook(self.prefix, key))
        return None if value is None else _text(value)

    def delete_hook(self, key: str, owner: str) -> bool:
        hook = keys.hook(self.prefix, key)
        return bool(self._scripts.delete_hook(keys=[hook], args=[owner]) == 1)

    # -- buffered events --------------------------------------------------------------------------
    def push_buffered_event(self, key: str, blob: bytes, ttl_ms: int) -> None:
        check_ttl(ttl_ms, "a buffered event ttl")
        buffer = keys.event_buffer(self.prefix, key)
        self._scripts.push_buffered_event(keys=[buffer], args=[bytes(blob), ttl_ms])

    def claim_buffered_event(self, key: str, owner: str) -> bytes | None:
        check_owner(owner)
        buffer = keys.event_buffer(self.prefix, key)
        item = self._scripts.claim_buffered_event(keys=[buffer], args=[owner])
        return None if item is None else bytes(item)

    def settle_buffered_event(self, key: str, owner: str) -> bool:
        check_owner(owner)
        buffer = keys.event_buffer(self.prefix, key)
        return bool(self._scripts.settle_buffered_event(keys=[buffer], args=[owner]) == 1)

    # -- dedupe -----------------------------------------------------------------------------------
    def claim_dedupe(self, key: str, dedupe_id: str, ttl_ms: int) -> bool:
        check_ttl(ttl_ms, "a dedupe ttl")
        seen = keys.dedupe(self.prefix, key, dedupe_id)
        return bool(self._r.set(seen, b"1", nx=True, px=ttl_ms))

    def release_dedupe(self, key: str, dedupe_id: str) -> None:
        self._r.delete(keys.dedupe(self.prefix, key, dedupe_id))
