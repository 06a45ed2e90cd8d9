"""Where run logs live: the :class:`EventStore` protocol and its two implementations.

``open_store(url)`` picks one from a URL: ``memory://`` for the in-process store (tests),
``redis://``, ``rediss://`` or ``unix://`` for Redis streams. This package never imports celery.
"""

from __future__ import annotations

from .base import AppendResult, DueTimer, EventStore, OutcomeResult, RunRecord
from .memory import MemoryEventStore
from .redis import RedisEventStore

__all__ = [
    "AppendResult",
    "DueTimer",
    "EventStore",
    "MemoryEventStore",
    "OutcomeResult",
    "RedisEventStore",
    "RunRecord",
    "open_store",
]

_REDIS_SCHEMES = ("redis://", "rediss://", "unix://")


def open_store(url: str, prefix: str = "durable") -> EventStore:
    """The event store for ``url``. Each ``memory://`` call makes a new, empty store."""
    if url.startswith("memory://"):
        return MemoryEventStore()
    if url.startswith(_REDIS_SCHEMES):
        return RedisEventStore.from_url(url, prefix)
    raise ValueError(
        f"unsupported event store URL {url!r}: use memory://, redis://, rediss:// or unix://"
    )
