"""Per-process caches that keep replay cheap (DESIGN.md §5).

These are the documented per-process globals: each worker process owns its own instances, made
by its Runtime, and ``reset()`` clears them after a fork (``worker_process_init``).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from typing import Any
from uuid import UUID

from ..replay.events import Event

__all__ = ["EventCache", "HydrationCache", "is_immutable"]

_SCALARS = (
    type(None),
    bool,
    int,
    float,
    complex,
    str,
    bytes,
    Decimal,
    date,
    datetime,
    time,
    timedelta,
    UUID,
)


def is_immutable(value: Any) -> bool:
    """True for values no replay can mutate: scalars, and tuples/frozensets of them."""
    if isinstance(value, (tuple, frozenset)):
        return all(is_immutable(item) for item in value)
    return isinstance(value, _SCALARS)


def _size(value: Any) -> int:
    if isinstance(value, (str, bytes)):
        return len(value)
    if isinstance(value, int) and not isinstance(value, bool):
        return (value.bit_length() + 7) // 8
    if isinstance(value, (tuple, frozenset)):
        return sum(_size(v) for v in value)
    return 16


class HydrationCache:
    """Decoded immutable results, keyed by (run id, entry id), bounded in bytes across runs.

    Mutable results are never stored here: one replay mutating a dict must not leak into the next.
    Errors are never stored (each replay raises a fresh exception object).
    """

    def __init__(self, max_bytes: int, max_item_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.max_item_bytes = max_item_bytes
        self._items: OrderedDict[tuple[str, str], tuple[Any, int]] = OrderedDict()
        self._by_run: dict[str, set[str]] = {}
        self._bytes = 0
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    @property
    def size_bytes(self) -> int:
        return self._bytes

    def __len__(self) -> int:
        return len(self._items)

    def get_or_decode(self, run_id: str, entry_id: str, decode: Callable[[], Any]) -> Any:
        key = (run_id, entry_id)
        with self._lock:
            found = self._items.get(key)
            if found is not None:
                self._items.move_to_end(key)
                self.hits += 1
                return found[0]
            self.misses += 1
        value = decode()
        if is_immutable(value):
            item = _size(value)
            size = item + 64  # key and bookkeeping overhead
            if item <= self.max_item_bytes and size <= self.max_bytes:
                self._store(key, value, size)
        return value

    def _store(self, key: tuple[str, str], value: Any, size: int) -> None:
        with self._lock:
            if key in self._items:
                return
            self._items[key] = (value, size)
            self._by_run.setdefault(key[0], set()).add(key[1])
            self._bytes += size
            while self._bytes > self.max_bytes and self._items:
                (run_id, entry_id), (_, old) = self._items.popitem(last=False)
                self._bytes -= old
                entries = self._by_run.get(run_id)
                if entries is not None:
                    entries.discard(entry_id)
                    if not entries:
                        del self._by_run[run_id]

    def drop_run(self, run_id: str) -> None:
        with self._lock:
            for entry_id in self._by_run.pop(run_id, ()):
                _, size = self._items.pop((run_id, entry_id))
                self._bytes -= size

    def reset(self) -> None:
        with self._lock:
            self._items.clear()
            self._by_run.clear()
            self._bytes = 0
            self.hits = self.misses = 0


class EventCache:
    """Per run, the entries already read: the next wake reads only the delta."""

    def __init__(self, read_since: Callable[[str, str | None], list[Event]], max_runs: int) -> None:
        self._read_since = read_since
        self.max_runs = max_runs
        self._runs: OrderedDict[str, list[Event]] = OrderedDict()
        self._lock = threading.Lock()

    def refresh(self, run_id: str) -> tuple[list[Event], list[Event]]:
        """Read what is new for the run; return (whole history, new entries)."""
        with self._lock:
            events = self._runs.get(run_id)
            if events is not None:
                self._runs.move_to_end(run_id)
        after = events[-1].entry_id if events else None
        new = self._read_since(run_id, after)
        with self._lock:
            events = self._runs.get(run_id, events)
            if events is None:
                events = []  # first read of this run: ``new`` is already the whole log
            elif events and after != events[-1].entry_id:
                events = []  # raced with another refresh of the same run: start over
                new = self._read_since(run_id, None)
            events.extend(new)
            self._runs[run_id] = events
            self._runs.move_to_end(run_id)
            while len(self._runs) > self.max_runs:
                self._runs.popitem(last=False)
        return events, new

    def absorb(self, run_id: str, after_id: str | None, new: list[Event]) -> bool:
        """Add entries read elsewhere (a script that also read the delta after ``after_id``).

        ``after_id`` None means ``new`` is the whole log. False, and the run's cache dropped,
        when ``after_id`` is not what the cache ends with (the next refresh reads it in full).
        """
        with self._lock:
            events = self._runs.get(run_id)
            if events is None and after_id is None:
                self._runs[run_id] = list(new)
                while len(self._runs) > self.max_runs:
                    self._runs.popitem(last=False)
                return True
            if events is None or (events[-1].entry_id if events else None) != after_id:
                self._runs.pop(run_id, None)
                return False
            events.extend(new)
            self._runs.move_to_end(run_id)
            return True

    def get(self, run_id: str) -> list[Event] | None:
        """The run's cached entries (the cache's own list), without reading the store."""
        with self._lock:
            return self._runs.get(run_id)

    def last_id(self, run_id: str) -> str | None:
        with self._lock:
            events = self._runs.get(run_id)
            return events[-1].entry_id if events else None

    def tail(self, run_id: str) -> tuple[str | None, int | None]:
        """``(last id, number of entries)`` of the run's cached log, ``(None, None)`` when none
        is cached. The cache holds a run's log from its first entry, so the number is how many
        entries the log holds up to that id (the store may skip a read on it)."""
        with self._lock:
            events = self._runs.get(run_id)
            return (events[-1].entry_id, len(events)) if events else (None, None)

    def __contains__(self, run_id: str) -> bool:
        return run_id in self._runs

    def __len__(self) -> int:
        return len(self._runs)

    def drop(self, run_id: str) -> None:
        with self._lock:
            self._runs.pop(run_id, None)

    def reset(self) -> None:
        with self._lock:
            self._runs.clear()
