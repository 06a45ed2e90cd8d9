"""The in-memory event store: the Redis store's semantics without a server, for unit tests.

One lock guards everything, so each method is atomic like the Lua script it stands for.
Entries are kept as the same field maps the Redis store writes and decoded by the same code
(:mod:`.entries`), so both stores return equal ``Event`` objects; decoding on every read also
means a caller mutating an event's meta cannot change the log.

Clocks: entry ids, timer deadlines, retention and external-event expiries use a wall clock
(``time.time`` unless one is passed, e.g. to skip time in tests) like Redis' server clock; lease
expiry uses ``time.monotonic()`` so a wall-clock jump cannot steal or extend a lease. A run past
its retention behaves as deleted (it is dropped when next touched). External events (hooks,
buffer, dedupe) live in :mod:`.memory_events`, timers in :mod:`.memory_timers`.
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
    TERMINAL_STATUSES,
    AheadResult,
    OutcomeResult,
    PassStart,
    RunRecord,
    WaitFor,
    check_lease_args,
    lease_lost,
    retention_for,
    run_not_found,
)
from .entries import (
    call_identity,
    check_entry_id,
    check_extra,
    check_rising,
    decode_entry,
    decode_run,
    encode_fields,
    identity_key,
    outcome_key,
)
from .memory_events import MemoryExternalEvents
from .memory_timers import MemoryTimers

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
    expires_ms: int | None = None  # set when it finished with a retention
    #: What the suspended workflow waits for: [mode, missing, set of cids] (see finish_pass).
    waitfor: list[Any] | None = None
    #: Outcomes of steps sent before their scheduling was recorded: (fields, key, identity of
    #: the call) in arrival order, until the step_scheduled entry comes (see record_outcome).
    early: list[tuple[dict[str, bytes], str, str]] = field(default_factory=list)

    def append_at(self, fields: dict[str, bytes], entry_id: str) -> str:
        """Like XADD with an explicit id: it must be above the stream's last one."""
        new = _parse_id(entry_id)
        if self.ids and new <= self.ids[-1]:
            raise ValueError(f"entry id {entry_id} is not above the stream's last one")
        self.ids.append(new)
        self.entries.append(fields)
        self.meta["updated_ms"] = str(new[0])
        return entry_id

    def scheduled_with(self, outcome_id: str | None, kind: bytes, cid: str) -> str | None:
        """The id of the entry right before ``outcome_id`` when it schedules ``cid`` (what
        append_fenced.lua's ``scheduled_with`` finds)."""
        if outcome_id is None:
            return None
        at = bisect.bisect_left(self.ids, _parse_id(outcome_id))
        if at == 0:
            return None
        before = self.entries[at - 1]
        if before.get("k") != kind or before.get("c") != cid.encode():
            return None
        ms, seq = self.ids[at - 1]
        return f"{ms}-{seq}"

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


class MemoryEventStore(MemoryExternalEvents, MemoryTimers):
    """:class:`~.base.EventStore` in process memory; thread-safe."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        super().__init__()
        self._clock = clock  # seconds since the epoch
        self.local_now_ms: Callable[[], int] | None = self.now_ms
        self._cond = threading.Condition(threading.RLock())  # the store's one lock (re-entrant)
        self._runs: dict[str, _Run] = {}
        self._wake: set[str] = set()
        self._leases: dict[str, _Lease] = {}

    # -- helpers (call with the lock held) --------------------------------------------------------
    def _live(self, run_id: str) -> _Run | None:
        """The run, unless it does not exist or its retention is over (then it is dropped)."""
        run = self._runs.get(keys.validate_run_id(run_id))
        if run is not None and run.expires_ms is not None and run.expires_ms <= self.now_ms():
            self._forget(run_id)
            return None
        return run

    def _forget(self, run_id: str) -> bool:
        existed = run_id in self._runs or run_id in self._wake or run_id in self._leases
        self._runs.pop(run_id, None)
        self._wake.discard(run_id)
        self._leases.pop(run_id, None)
        return existed

    def _run(self, run_id: str) -> _Run:
        run = self._live(run_id)
        if run is None:
            raise run_not_found(run_id)
        return run

    def _lease(self, run_id: str) -> _Lease | None:
        self._live(run_id)  # an expired run takes its lease with it
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
        run = self._live(run_id)
        if run is None:
            return []
        start = 0
        if after_id is not None:
            start = bisect.bisect_right(run.ids, _parse_id(after_id))
        return [self._event(run, i) for i in range(start, len(run.ids))]

    def _check_known(self, run_id: str, after_id: str | None, known: int | None) -> None:
        """Refuse a ``known`` that is not the number of entries up to ``after_id``: the Redis
        store would skip its read on it (see :meth:`EventStore.append_fenced_and_read`)."""
        run = self._live(run_id)
        if known is None or after_id is None or run is None:
            return
        held = bisect.bisect_right(run.ids, _parse_id(after_id))
        if known != held:
            raise ValueError(
                f"known={known} but the log of run {run_id} holds {held} entries up to "
                f"{after_id}: pass the number of entries read, or None"
            )

    # -- runs -------------------------------------------------------------------------------------
    def create_run(
        self, run_id: str, workflow: str, started: NewEvent, extra: dict[str, str]
    ) -> bool:
        if started.kind != RUN_STARTED:
            raise ValueError(f"a run must start with a {RUN_STARTED!r} entry, not {started.kind!r}")
        check_extra(extra)
        keys.validate_run_id(run_id)
        with self._cond:
            if self._live(run_id) is not None:
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
            run = self._live(run_id)
            return None if run is None else decode_run(run_id, dict(run.meta))

    def list_runs(self, status: str | None = None, limit: int = 100) -> list[RunRecord]:
        with self._cond:
            live = [(rid, self._live(rid)) for rid in list(self._runs)]
            records = [decode_run(rid, dict(run.meta)) for rid, run in live if run is not None]
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
            return self._forget(run_id)

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
            run = self._live(run_id)
            index = -1 if run is None else bisect.bisect_left(run.ids, wanted)
            if run is None or index == len(run.ids) or run.ids[index] != wanted:
                return None
            return self._event(run, index)

    def read_last(self, run_id: str, count: int = 1) -> list[Event]:
        with self._cond:
            run = self._live(run_id)
            if run is None or count < 1:
                return []
            return [self._event(run, i) for i in range(max(len(run.ids) - count, 0), len(run.ids))]

    def outcome_id(self, run_id: str, key: str) -> str | None:
        with self._cond:
            run = self._live(run_id)
            return None if run is None else run.outcomes.get(key)

    def append_fenced(
        self,
        run_id: str,
        token: str,
        events: Sequence[NewEvent],
        *,
        status: str | None = None,
        outbox: Sequence[str] = (),
        retention_ms: int | None = None,
    ) -> list[str]:
        retention = retention_for(status, retention_ms)
        keys.validate_run_id(run_id)
        fields = [_fields(e) for e in events]  # fail before writing
        with self._cond:
            return self._append(run_id, token, fields, status, outbox, retention)

    def append_fenced_and_read(
        self,
        run_id: str,
        token: str,
        events: Sequence[NewEvent],
        *,
        after_id: str | None,
        known: int | None = None,
        status: str | None = None,
        outbox: Sequence[str] = (),
        retention_ms: int | None = None,
    ) -> tuple[list[str], list[Event]]:
        retention = retention_for(status, retention_ms)
        keys.validate_run_id(run_id)
        if after_id is not None:
            check_entry_id(after_id)
        fields = [_fields(e) for e in events]
        with self._cond:
            self._check_known(run_id, after_id, known)
            ids = self._append(run_id, token, fields, status, outbox, retention)
            return ids, self._after(run_id, after_id)

    def append_and_finish(
        self,
        run_id: str,
        token: str,
        events: Sequence[NewEvent],
        *,
        after_id: str | None,
        known: int | None = None,
        waitfor: WaitFor | None,
    ) -> tuple[list[str], list[Event], bool]:
        keys.validate_run_id(run_id)
        if after_id is not None:
            check_entry_id(after_id)
        fields = [_fields(e) for e in events]
        with self._cond:
            self._check_known(run_id, after_id, known)
            before = self._after(run_id, after_id)  # others' entries, read before the batch
            ids = self._append(run_id, token, fields, None, (), None)
            entries = self._after(run_id, after_id)
            own = set(ids)
            promoted = [e for e in entries[len(before) :] if e.entry_id not in own]
            finished = not before and not promoted
            if finished:
                self._finish(run_id, self._live(run_id), waitfor)
            return ids, entries, finished

    def _append(
        self,
        run_id: str,
        token: str,
        fields: list[tuple[dict[str, bytes], str, str]],
        status: str | None,
        outbox: Sequence[str],
        retention: int | None,
    ) -> list[str]:
        """The body of a fenced append; call with the lock held."""
        lease = self._holds(run_id, token)
        if lease is None:
            raise lease_lost(run_id)
        run = self._run(run_id)
        lease.expires = time.monotonic() + lease.ttl_ms / 1000
        ids: list[str] = []
        appended = False
        held: list[tuple[str, str]] = []  # (cid, key): a step's scheduled key and identity
        settled: set[str] = set()
        settles = {okey for entry, okey, _ in fields if okey and okey == entry["c"].decode()}
        for entry, okey, identity in fields:
            cid = entry["c"].decode()
            existing = run.outcomes.get(okey) if okey else None
            if existing is None and okey and okey != cid and cid in settles:
                existing = run.scheduled_with(run.outcomes.get(cid), entry["k"], cid)
            if existing is not None:
                ids.append(existing)
                continue
            # Stamps updated_ms with the entry's time, as the script does.
            entry_id = run.append(entry, self.now_ms())
            if okey:
                run.outcomes[okey] = entry_id
                if okey == cid:
                    settled.add(cid)
                else:
                    held.append((cid, okey))
            if identity:
                run.outcomes[identity_key(cid)] = identity
                held.append((cid, identity_key(cid)))
            ids.append(entry_id)
            appended = True
        # A step settled in this batch keeps its outcome key only, as the script does.
        for cid, key in held:
            if cid in settled:
                del run.outcomes[key]
        run.outbox.update(outbox)
        appended = self._promote(run) or appended
        if status:
            run.meta["status"] = status
            if not appended:
                run.meta["updated_ms"] = str(self.now_ms())
        if retention is not None:
            run.expires_ms = self.now_ms() + retention
        if appended:
            self._cond.notify_all()
        return ids

    def _promote(self, run: _Run) -> bool:
        """Move early outcomes whose step is now scheduled into the log (as the script does)."""
        moved = False
        waiting: list[tuple[dict[str, bytes], str, str]] = []
        for fields, okey, identity in run.early:
            call = run.outcomes.get(identity_key(fields["c"].decode()))
            if okey in run.outcomes or (call is not None and call != identity):
                continue  # a duplicate, or the cid is another call's now: dropped
            if call is None:
                waiting.append((fields, okey, identity))
            else:
                run.outcomes[okey] = run.append(fields, self.now_ms())
                moved = True
        run.early = waiting
        return moved

    def record_outcome(
        self,
        run_id: str,
        key: str,
        event: NewEvent,
        *,
        wake: bool = True,
        force: bool = False,
        identity: str | None = None,
    ) -> OutcomeResult:
        keys.validate_run_id(run_id)
        fields = encode_fields(event)
        with self._cond:
            run = self._live(run_id)
            existing = None if run is None else run.outcomes.get(key)
            if existing is not None:
                return OutcomeResult(existing, created=False, wake=False)
            if run is None:
                raise run_not_found(run_id)
            if identity:
                call = run.outcomes.get(identity_key(event.cid))
                if call is None:
                    run.early.append((fields, key, identity))
                    return OutcomeResult("", created=True, wake=False, parked=True)
                if call != identity:
                    return OutcomeResult("", created=False, wake=False)
            entry_id = run.append(fields, self.now_ms())
            run.outcomes[key] = entry_id
            finished = run.meta.get("status") in TERMINAL_STATUSES
            woke = (
                wake
                and not finished
                and run_id not in self._wake
                and (force or _needed(run, event.cid))
            )
            if woke:
                self._wake.add(run_id)
            self._cond.notify_all()
            return OutcomeResult(entry_id, created=True, wake=woke)

    def record_and_begin(
        self,
        run_id: str,
        key: str,
        event: NewEvent,
        token: str,
        ttl_ms: int,
        after_id: str | None,
        *,
        identity: str | None = None,
    ) -> tuple[OutcomeResult, PassStart | None]:
        with self._cond:  # one atomic operation, as the Lua script is
            outcome = self.record_outcome(run_id, key, event, wake=True, identity=identity)
            if not outcome.wake:
                return outcome, None
            return outcome, self.begin_pass(run_id, token, ttl_ms, after_id)

    def record_ahead(
        self,
        run_id: str,
        key: str,
        outcome: Event,
        token: str,
        ttl_ms: int,
        after_id: str,
        *,
        identity: str | None = None,
        scheduled: Sequence[Event] = (),
        waitfor: WaitFor | None = None,
    ) -> AheadResult:
        check_lease_args(token, ttl_ms)
        keys.validate_run_id(run_id)
        check_rising(after_id, [e.entry_id for e in (outcome, *scheduled)])
        outcome_fields = encode_fields(
            NewEvent(outcome.kind, outcome.cid, outcome.meta, outcome.payload)
        )
        with self._cond:
            run = self._live(run_id)
            reason = ""
            if run is None:
                reason = "missing"
            elif run.meta.get("status") != "running":
                reason = "status"
            elif key in run.outcomes:
                reason = "recorded"
            elif identity and run.outcomes.get(identity_key(outcome.cid)) != identity:
                reason = "call"
            elif self._lease(run_id) is not None or run_id in self._wake:
                reason = "busy"
            elif not run.ids or "{}-{}".format(*run.ids[-1]) != after_id:
                reason = "moved"
            if run is None or reason:
                return AheadResult("refused", reason=reason)
            run.outcomes[key] = run.append_at(outcome_fields, outcome.entry_id)
            if not scheduled:
                self._wake.add(run_id)
                self._leases[run_id] = _Lease(token, ttl_ms, time.monotonic() + ttl_ms / 1000)
                self._cond.notify_all()
                return AheadResult("begun")
            for event in scheduled:
                new = NewEvent(event.kind, event.cid, event.meta, event.payload)
                fields, okey, call = _fields(new)
                run.append_at(fields, event.entry_id)
                if okey:
                    run.outcomes[okey] = event.entry_id
                if call:
                    run.outcomes[identity_key(event.cid)] = call
            last = scheduled[-1].entry_id
            self._promote(run)
            self._cond.notify_all()
            promoted = self._after(run_id, last)
            if not promoted:
                self._finish(run_id, run, waitfor)
                return AheadResult("finished")
            self._wake.add(run_id)
            self._leases[run_id] = _Lease(token, ttl_ms, time.monotonic() + ttl_ms / 1000)
            return AheadResult("continued", promoted)

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

    def begin_pass(self, run_id: str, token: str, ttl_ms: int, after_id: str | None) -> PassStart:
        with self._cond:  # re-entrant: the three steps are one atomic operation, as in Lua
            if not self.acquire_lease(run_id, token, ttl_ms):
                return PassStart(False, lease_ms=self.lease_ttl_ms(run_id))
            return PassStart(True, self.pending_outbox(run_id), self.read_since(run_id, after_id))

    def read_step_input(
        self, run_id: str, outcome_key: str, entry_id: str
    ) -> tuple[str | None, Event | None]:
        with self._cond:
            return self.outcome_id(run_id, outcome_key), self.read_entry(run_id, entry_id)

    def lease_ttl_ms(self, run_id: str) -> int:
        with self._cond:
            lease = self._lease(keys.validate_run_id(run_id))
            return 0 if lease is None else max(int((lease.expires - time.monotonic()) * 1000), 0)

    def lease_holder(self, run_id: str) -> str | None:
        with self._cond:
            lease = self._lease(keys.validate_run_id(run_id))
            return None if lease is None else lease.token

    def finish_pass(
        self, run_id: str, token: str, last_id: str, waitfor: WaitFor | None = None
    ) -> bool:
        keys.validate_run_id(run_id)
        with self._cond:
            if self._holds(run_id, token) is None:
                raise lease_lost(run_id)
            run = self._live(run_id)
            tail = "" if run is None or not run.ids else "{}-{}".format(*run.ids[-1])
            if tail != last_id:
                return False
            self._finish(run_id, run, waitfor)
            return True

    def _finish(self, run_id: str, run: _Run | None, waitfor: WaitFor | None) -> None:
        """End a pass that has seen the whole log (call with the lock held)."""
        if run is not None:
            run.outbox.clear()
            run.waitfor = (
                None if waitfor is None else [waitfor.mode, waitfor.missing, set(waitfor.cids)]
            )
        self._wake.discard(run_id)
        self._leases.pop(run_id, None)

    def release_lease(self, run_id: str, token: str) -> None:
        with self._cond:
            if self._holds(keys.validate_run_id(run_id), token) is not None:
                del self._leases[run_id]

    def claim_redelivery(self, run_id: str, idle_ms: int) -> bool:
        with self._cond:
            run = self._live(keys.validate_run_id(run_id))
            if run is None or run.meta.get("status") != "running":
                return False
            now = self.now_ms()
            last = max(int(run.meta.get("updated_ms", 0)), int(run.meta.get("redelivered_ms", 0)))
            if now - last < idle_ms:
                return False
            run.meta["redelivered_ms"] = str(now)
            return True

    def request_wake(self, run_id: str) -> bool:
        with self._cond:
            self._run(run_id)
            if run_id in self._wake:
                return False
            self._wake.add(run_id)
            return True

    def wake_pending(self, run_id: str) -> bool:
        with self._cond:
            self._live(run_id)  # an expired run takes its flag with it
            return run_id in self._wake

    def pending_outbox(self, run_id: str) -> list[str]:
        with self._cond:
            run = self._live(run_id)
            return [] if run is None else sorted(run.outbox)

    def now_ms(self) -> int:
        return int(self._clock() * 1000)


def _fields(event: NewEvent) -> tuple[dict[str, bytes], str, str]:
    """What the append script gets per event: the entry, its append-once key, what it calls."""
    return encode_fields(event), outcome_key(event), call_identity(event)


def _needed(run: _Run, cid: str) -> bool:
    """Whether an outcome for ``cid`` meets what the suspended workflow waits for."""
    if run.waitfor is None:
        return True
    mode, _, cids = run.waitfor
    if cid not in cids:
        return False
    if mode == "all":
        run.waitfor[1] -= 1
        return bool(run.waitfor[1] <= 0)
    return True
