"""The in-memory event store: the Redis store's semantics without a server, for unit tests.

One lock guards everything, so each method is atomic like the Lua script it stands for.
Entries are kept as the same field maps the Redis store writes and decoded by the same code
(:mod:`.entries`), so both stores return equal ``Event`` objects; decoding on every read also
means a caller mutating an event's meta cannot change the log.

Clocks: entry ids and timer deadlines use a wall clock (``time.time`` unless one is passed, e.g.
to skip time in tests) like Redis' server clock; lease expiry uses ``time.monotonic()`` so a
wall-clock jump cannot steal or extend a lease.
"""

from __future__ import annotations

import bisect
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..replay.events import RUN_STARTED, Event, NewEvent
from . import keys
from .base import (
    DueTimer,
    OutcomeResult,
    RunRecord,
    check_lease_args,
    lease_lost,
    run_not_found,
)
from .entries import (
    check_extra,
    decode_due,
    decode_entry,
    decode_run,
    encode_fields,
    encode_timer,
    outcome_key,
)

__all__ = ["MemoryEventStore"]

_EntryId = tuple[int, int]


def _parse_id(entry_id: str) -> _EntryId:
    ms, _, seq = entry_id.partition("-")
    try:
        return int(ms), int(seq or 0)
    except ValueError:
        raise ValueError(f"invalid stream entry id {entry_id!r}; expected '<ms>-<seq>'") from None


@dataclass
class _Run:
    meta: dict[str, str]
    ids: list[_EntryId] = field(default_factory=list)  # sorted: stream order
    entries: list[dict[str, bytes]] = field(default_factory=list)
    outcomes: dict[str, str] = field(default_factory=dict)
    outbox: set[str] = field(default_factory=set)

    def append(self, fields: dict[str, bytes], now: int) -> str:
        # Like XADD *: the wall clock in ms, but never going back within one stream.
        last_ms, last_seq = self.ids[-1] if self.ids else (0, -1)
        new = (now, 0) if now > last_ms else (last_ms, last_seq + 1)
        self.ids.append(new)
        self.entries.append(fields)
        self.meta["updated_ms"] = str(new[0])
        return f"{new[0]}-{new[1]}"


@dataclass
class _Lease:
    token: str
    ttl_ms: int
    expires: float  # time.monotonic()


class MemoryEventStore:
    """:class:`~.base.EventStore` in process memory; thread-safe."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock  # seconds since the epoch
        self._cond = threading.Condition(threading.Lock())  # also the store's one lock
        self._runs: dict[str, _Run] = {}
        self._wake: set[str] = set()
        self._leases: dict[str, _Lease] = {}
        self._timers: dict[str, int] = {}

    # -- helpers (call with the lock held) --------------------------------------------------------
    def _run(self, run_id: str) -> _Run:
        run = self._runs.get(keys.validate_run_id(run_id))
        if run is None:
            raise run_not_found(run_id)
        return run

    def _lease(self, run_id: str) -> _Lease | None:
        lease = self._leases.get(run_id)
        if lease is not None and lease.expires <= time.monotonic():
            del self._leases[run_id]
            return None
        return lease

    def _holds(self, run_id: str, token: str) -> _Lease | None:
        lease = self._lease(run_id)
        return lease if lease is not None and lease.token == token else None

    def _event(self, run: _Run, index: int) -> Event:
        entry_id = run.ids[index]
        return decode_entry(f"{entry_id[0]}-{entry_id[1]}", run.entries[index])

    def _after(self, run_id: str, after_id: str | None) -> list[Event]:
        run = self._runs.get(keys.validate_run_id(run_id))
        if run is None:
            return []
        start = 0
        if after_id is not None:
            start = bisect.bisect_right(run.ids, _parse_id(after_id))
        return [self._event(run, i) for i in range(start, len(run.ids))]

    # -- runs -------------------------------------------------------------------------------------
    def create_run(
        self, run_id: str, workflow: str, started: NewEvent, extra: dict[str, str]
    ) -> bool:
        if started.kind != RUN_STARTED:
            raise ValueError(f"a run must start with a {RUN_STARTED!r} entry, not {started.kind!r}")
        check_extra(extra)
        keys.validate_run_id(run_id)
        with self._cond:
            if run_id in self._runs:
                return False
            run = _Run(meta={"workflow": workflow, "status": "running"})
            entry_id = run.append(encode_fields(started), self.now_ms())
            run.meta["created_ms"] = run.meta["updated_ms"] = entry_id.split("-")[0]
            run.meta.update(extra)
            self._runs[run_id] = run
            self._wake.add(run_id)
            self._cond.notify_all()
            return True

    def get_run(self, run_id: str) -> RunRecord | None:
        with self._cond:
            run = self._runs.get(keys.validate_run_id(run_id))
            return None if run is None else decode_run(run_id, dict(run.meta))

    def list_runs(self, status: str | None = None, limit: int = 100) -> list[RunRecord]:
        with self._cond:
            records = [decode_run(rid, dict(run.meta)) for rid, run in self._runs.items()]
        # Same order as ZREVRANGE: score descending, then member bytes descending.
        ordered = sorted(
            (r for r in records if r is not None and (status is None or r.status == status)),
            key=lambda r: (r.created_ms, r.run_id.encode()),
            reverse=True,
        )
        return ordered[: max(limit, 0)]

    def set_status(self, run_id: str, status: str) -> None:
        with self._cond:
            run = self._run(run_id)
            run.meta["status"] = status
            run.meta["updated_ms"] = str(self.now_ms())

    def delete_run(self, run_id: str) -> bool:
        keys.validate_run_id(run_id)
        with self._cond:
            existed = run_id in self._runs or run_id in self._wake or run_id in self._leases
            self._runs.pop(run_id, None)
            self._wake.discard(run_id)
            self._leases.pop(run_id, None)
            return existed

    # -- the log ----------------------------------------------------------------------------------
    def read_since(self, run_id: str, after_id: str | None) -> list[Event]:
        with self._cond:
            return self._after(run_id, after_id)

    def read_blocking(self, run_id: str, after_id: str | None, timeout_ms: int) -> list[Event]:
        deadline = time.monotonic() + timeout_ms / 1000
        with self._cond:
            while True:
                events = self._after(run_id, after_id)
                remaining = deadline - time.monotonic()
                if events or remaining <= 0:
                    return events
                self._cond.wait(remaining)

    def read_entry(self, run_id: str, entry_id: str) -> Event | None:
        wanted = _parse_id(entry_id)
        with self._cond:
            run = self._runs.get(keys.validate_run_id(run_id))
            index = -1 if run is None else bisect.bisect_left(run.ids, wanted)
            if run is None or index == len(run.ids) or run.ids[index] != wanted:
                return None
            return self._event(run, index)

    def outcome_id(self, run_id: str, key: str) -> str | None:
        with self._cond:
            run = self._runs.get(keys.validate_run_id(run_id))
            return None if run is None else run.outcomes.get(key)

    def append_fenced(
        self,
        run_id: str,
        token: str,
        events: Sequence[NewEvent],
        *,
        status: str | None = None,
        outbox: Sequence[str] = (),
    ) -> list[str]:
        keys.validate_run_id(run_id)
        fields = [(encode_fields(e), outcome_key(e)) for e in events]  # fail before writing
        with self._cond:
            lease = self._holds(run_id, token)
            if lease is None:
                raise lease_lost(run_id)
            run = self._run(run_id)
            lease.expires = time.monotonic() + lease.ttl_ms / 1000
            ids: list[str] = []
            appended = False
            for entry, okey in fields:
                existing = run.outcomes.get(okey) if okey else None
                if existing is not None:
                    ids.append(existing)
                    continue
                # Stamps updated_ms with the entry's time, as the script does.
                entry_id = run.append(entry, self.now_ms())
                if okey:
                    run.outcomes[okey] = entry_id
                ids.append(entry_id)
                appended = True
            run.outbox.update(outbox)
            if status:
                run.meta["status"] = status
                if not appended:
                    run.meta["updated_ms"] = str(self.now_ms())
            if appended:
                self._cond.notify_all()
            return ids

    def record_outcome(
        self, run_id: str, key: str, event: NewEvent, *, wake: bool = True
    ) -> OutcomeResult:
        keys.validate_run_id(run_id)
        fields = encode_fields(event)
        with self._cond:
            run = self._runs.get(run_id)
            existing = None if run is None else run.outcomes.get(key)
            if existing is not None:
                return OutcomeResult(existing, created=False, wake=False)
            if run is None:
                raise run_not_found(run_id)
            entry_id = run.append(fields, self.now_ms())
            run.outcomes[key] = entry_id
            woke = wake and run_id not in self._wake
            if woke:
                self._wake.add(run_id)
            self._cond.notify_all()
            return OutcomeResult(entry_id, created=True, wake=woke)

    # -- orchestration ----------------------------------------------------------------------------
    def acquire_lease(self, run_id: str, token: str, ttl_ms: int) -> bool:
        check_lease_args(token, ttl_ms)
        keys.validate_run_id(run_id)
        with self._cond:
            lease = self._lease(run_id)
            if lease is not None and lease.token != token:
                return False
            self._leases[run_id] = _Lease(token, ttl_ms, time.monotonic() + ttl_ms / 1000)
            return True

    def lease_ttl_ms(self, run_id: str) -> int:
        with self._cond:
            lease = self._lease(keys.validate_run_id(run_id))
            return 0 if lease is None else max(int((lease.expires - time.monotonic()) * 1000), 0)

    def lease_holder(self, run_id: str) -> str | None:
        with self._cond:
            lease = self._lease(keys.validate_run_id(run_id))
            return None if lease is None else lease.token

    def finish_pass(self, run_id: str, token: str, last_id: str) -> bool:
        keys.validate_run_id(run_id)
        with self._cond:
            if self._holds(run_id, token) is None:
                raise lease_lost(run_id)
            run = self._runs.get(run_id)
            tail = "" if run is None or not run.ids else "{}-{}".format(*run.ids[-1])
            if tail != last_id:
                return False
            if run is not None:
                run.outbox.clear()
            self._wake.discard(run_id)
            del self._leases[run_id]
            return True

    def release_lease(self, run_id: str, token: str) -> None:
        with self._cond:
            if self._holds(keys.validate_run_id(run_id), token) is not None:
                del self._leases[run_id]

    def request_wake(self, run_id: str) -> bool:
        with self._cond:
            self._run(run_id)
            if run_id in self._wake:
                return False
            self._wake.add(run_id)
            return True

    def wake_pending(self, run_id: str) -> bool:
        with self._cond:
            return keys.validate_run_id(run_id) in self._wake

    def pending_outbox(self, run_id: str) -> list[str]:
        with self._cond:
            run = self._runs.get(keys.validate_run_id(run_id))
            return [] if run is None else sorted(run.outbox)

    # -- timers -----------------------------------------------------------------------------------
    def add_timer(
        self, kind: str, run_id: str, cid: str, delay_ms: int, data: dict[str, Any]
    ) -> int:
        member = encode_timer(kind, keys.validate_run_id(run_id), cid, data)
        with self._cond:
            return self._timers.setdefault(member, self.now_ms() + max(int(delay_ms), 0))

    def claim_due_timers(self, claim_ms: int, limit: int = 100) -> list[DueTimer]:
        with self._cond:
            now = self.now_ms()
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

    def now_ms(self) -> int:
        return int(self._clock() * 1000)
