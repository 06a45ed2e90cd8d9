"""The Redis streams event store: the product.

One stream per run, plus a few small per-run keys (see :mod:`.keys`), all under the run's hash
tag. Every check-and-write is one Lua script (see ``lua/``), so the orchestrator's hot path is
one round trip per call: :meth:`read_since` (XRANGE), :meth:`append_fenced` (or
:meth:`append_fenced_and_read`, which also reads what arrived meanwhile) and :meth:`finish_pass`
(one EVALSHA each). External events (hooks, buffer, dedupe) live in :mod:`.redis_events`.

Large payloads (:data:`LARGE_PAYLOAD_BYTES` and more) do not pass through Lua: every byte a
script is given, or reads, costs Redis about 2 ns on its one thread, because the interpreter
hashes every string whole (measured on Redis 7.0: 21 us for 10 KiB, 200 us for 100 KiB, against
under 1 us for an HSET of the same bytes). A write sends them in an HSET to the run's
``payloads`` hash ahead of its script, in the same round trip, and the entry holds their
reference (field ``b``); the script refuses a reference that is not there. Reads resolve
references with one HMGET, and not at all for the payloads the caller itself just wrote. A
reference is random, so a pass that lost its lease (whose script refuses) leaves at most an
unreferenced payload behind, never one in place of another; it goes with the run's keys.

Needs Redis >= 6.2 (exclusive XRANGE bounds) or fakeredis with Lua (``lupa``). Clocks: every
timestamp (entry ids, deadlines, ``updated_ms``) comes from the Redis server, which all workers
share, so worker clock skew never moves a deadline.
"""

from __future__ import annotations

import itertools
import os
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import replace
from typing import Any

import redis

from ..errors import DecodingError
from ..replay.events import RUN_STARTED, Event, NewEvent, entry_millis
from . import keys
from .base import (
    AheadResult,
    DueTimer,
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
    decode_due,
    decode_entry,
    decode_run,
    encode_timer,
    event_args,
    outcome_key,
    own_entries,
    payload_ref,
    split_lease,
)
from .redis_events import RedisExternalEvents
from .scripts import Scripts

__all__ = ["LARGE_PAYLOAD_BYTES", "RedisEventStore"]

#: Payloads of at least this many bytes are kept beside the log (see the module's doc). Below
#: about this size the HSET costs Redis more than the bytes cost its Lua.
LARGE_PAYLOAD_BYTES = 2048

_RUN_KEYS_KEPT = 4096
_LEASE_LOST = -1
_NO_RUN = -2
# The "created" slot of a record script's reply for a step sent first: its outcome was kept
# early, or dropped (its cid is scheduled for another call). See record_outcome.
_PARKED = 2
_DROPPED = 3


def _early(code: int) -> OutcomeResult:
    return OutcomeResult("", code == _PARKED, False, parked=code == _PARKED)


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


class _Payloads:
    """What one write keeps beside the log: the Lua slots of its entries, and the HSET to send
    before its script."""

    __slots__ = ("large", "refs")

    def __init__(self, large: int) -> None:
        self.large = large
        self.refs: dict[str, bytes] = {}

    def args(self, event: NewEvent) -> list[str | bytes]:
        payload = event.payload
        if payload is None or len(payload) < self.large:
            return event_args(event)
        ref = os.urandom(8).hex()
        self.refs[ref] = bytes(payload)
        return event_args(event, ref)

    def write(self, key: str) -> tuple[Any, ...] | None:
        if not self.refs:
            return None
        return ("HSET", key, *itertools.chain.from_iterable(self.refs.items()))


class RedisEventStore(RedisExternalEvents):
    """:class:`~.base.EventStore` on Redis streams.

    ``client`` must return bytes (``decode_responses=False``): payloads are binary.
    """

    local_now_ms: Callable[[], int] | None = None  # the clock is the server's

    def __init__(
        self,
        client: redis.Redis,
        prefix: str = "durable",
        *,
        large_payload_bytes: int = LARGE_PAYLOAD_BYTES,
    ) -> None:
        pool = getattr(client, "connection_pool", None)  # RedisCluster has none
        if getattr(pool, "connection_kwargs", {}).get("decode_responses"):
            raise ValueError(
                "RedisEventStore needs a client created with decode_responses=False "
                "(payloads are binary); create another client for the store"
            )
        self.prefix = keys.validate_prefix(prefix)
        # redis-py types replies as "value or awaitable"; this store is sync-only.
        self._r: Any = client
        self._scripts = Scripts.register(client)
        self._large = int(large_payload_bytes)
        self._run_keys: dict[str, keys.RunKeys] = {}
        # fakeredis' XREAD BLOCK has not blocked reliably across the versions we accept, so
        # on fakeredis read_blocking polls instead (the cost does not matter there).
        self._poll_reads = type(client).__module__.startswith("fakeredis")

    @classmethod
    def from_url(cls, url: str, prefix: str = "durable", **kwargs: Any) -> RedisEventStore:
        kwargs["decode_responses"] = False
        return cls(redis.Redis.from_url(url, **kwargs), prefix)

    @property
    def client(self) -> redis.Redis:
        return self._r  # type: ignore[no-any-return]

    def _keys(self, run_id: str) -> keys.RunKeys:
        # Every call names the run's keys; a worker serves few runs at a time (2 us a call).
        found = self._run_keys.get(run_id)
        if found is None:
            if len(self._run_keys) >= _RUN_KEYS_KEPT:
                self._run_keys.clear()
            found = self._run_keys[run_id] = keys.run_keys(self.prefix, run_id)
        return found

    def _events(
        self,
        run_id: str,
        raw: Iterable[tuple[Any, Mapping[Any, bytes]]],
        known: Mapping[str, bytes] | None = None,
    ) -> list[Event]:
        """Entries as read, with payloads kept beside the log filled in: from ``known`` (what
        the caller wrote itself), the rest with one HMGET."""
        events: list[Event] = []
        refs: dict[int, str] = {}
        for entry_id, fields in raw:
            ref = payload_ref(fields)
            if ref is not None:
                refs[len(events)] = ref
            events.append(decode_entry(entry_id, fields))
        if not refs:
            return events
        known = known or {}
        wanted = sorted({r for r in refs.values() if r not in known})
        key = self._keys(run_id).payloads
        found = dict(zip(wanted, self._r.hmget(key, wanted), strict=True)) if wanted else {}
        for at, ref in refs.items():
            payload = known.get(ref, found.get(ref))
            if payload is None:
                raise DecodingError(
                    f"run {run_id!r}: the payload of entry {events[at].entry_id} "
                    f"({events[at].kind} {events[at].cid!r}) is missing from {key}"
                )
            events[at] = replace(events[at], payload=payload)
        return events

    # -- runs -------------------------------------------------------------------------------------
    def create_run(
        self, run_id: str, workflow: str, started: NewEvent, extra: dict[str, str]
    ) -> bool:
        if started.kind != RUN_STARTED:
            raise ValueError(f"a run must start with a {RUN_STARTED!r} entry, not {started.kind!r}")
        check_extra(extra)
        k = self._keys(run_id)
        payloads = _Payloads(self._large)
        args: list[Any] = [workflow, *payloads.args(started)]
        for name, value in extra.items():
            args += [name, value]
        created, value = self._scripts.create_run(
            keys=[k.log, k.meta, k.wake, k.payloads, k.outcomes],
            args=args,
            before=payloads.write(k.payloads),
        )
        created_ms = entry_millis(_text(value)) if created == 1 else int(value)
        if created_ms:
            # Indexed after the script (another cluster slot); NX on every call, so a crash
            # between the two is repaired by the caller's retry of create_run.
            self._r.zadd(keys.runs_index(self.prefix), {run_id: created_ms}, nx=True)
        return bool(created == 1)

    def get_run(self, run_id: str) -> RunRecord | None:
        return decode_run(run_id, self._r.hgetall(self._keys(run_id).meta))

    def list_runs(self, status: str | None = None, limit: int = 100) -> list[RunRecord]:
        """Newest first. Runs whose meta is gone (expired after their retention, or deleted
        mid-listing) are left out and dropped from the index."""
        index = keys.runs_index(self.prefix)
        found: list[RunRecord] = []
        chunk = limit if status is None else max(limit, 100)
        start = 0
        while len(found) < limit:
            ids = [_text(i) for i in self._r.zrevrange(index, start, start + chunk - 1)]
            if not ids:
                break
            pipe = self._r.pipeline(transaction=False)
            for run_id in ids:
                pipe.hgetall(self._keys(run_id).meta)
            gone: list[str] = []
            for run_id, fields in zip(ids, pipe.execute(), strict=True):
                record = decode_run(run_id, fields)
                if record is None:
                    gone.append(run_id)
                elif status is None or record.status == status:
                    found.append(record)
                    if len(found) == limit:
                        break
            if gone:
                # Lazily, because the index is global (another slot) and a run expires by
                # itself. A create_run of the same id racing this is repaired by its retry.
                self._r.zrem(index, *gone)
            start += len(ids) - len(gone)  # the removed ones no longer shift the next page
        return found

    def set_status(self, run_id: str, status: str) -> None:
        if self._scripts.set_status(keys=[self._keys(run_id).meta], args=[status]) == _NO_RUN:
            raise run_not_found(run_id)

    def delete_run(self, run_id: str) -> bool:
        """Delete every key of the run and unindex it; True if it existed. Timers of the run
        are left to fire into nothing (``record_outcome`` raises RunNotFound; drop them then)."""
        pipe = self._r.pipeline(transaction=False)
        pipe.delete(*self._keys(run_id).all())
        pipe.zrem(keys.runs_index(self.prefix), run_id)
        deleted, unindexed = pipe.execute()
        return bool(deleted or unindexed)

    # -- the log ----------------------------------------------------------------------------------
    def read_since(self, run_id: str, after_id: str | None) -> list[Event]:
        start = "-" if after_id is None else f"({after_id}"
        return self._events(run_id, self._r.xrange(self._keys(run_id).log, start, "+"))

    def read_entry(self, run_id: str, entry_id: str) -> Event | None:
        found = self._r.xrange(self._keys(run_id).log, entry_id, entry_id, count=1)
        return self._events(run_id, found)[0] if found else None

    def read_last(self, run_id: str, count: int = 1) -> list[Event]:
        log = self._keys(run_id).log
        if count < 1:
            return []
        newest_first = self._r.xrevrange(log, "+", "-", count=int(count))
        return self._events(run_id, reversed(newest_first))

    def read_blocking(self, run_id: str, after_id: str | None, timeout_ms: int) -> list[Event]:
        """Like :meth:`read_since`, but wait up to ``timeout_ms`` for entries to arrive.

        Returns at once when entries are already there; ``[]`` on timeout. The client's
        ``socket_timeout`` must exceed ``timeout_ms``.
        """
        if self._poll_reads:
            deadline = time.monotonic() + timeout_ms / 1000
            while True:
                events = self.read_since(run_id, after_id)
                remaining = deadline - time.monotonic()
                if events or remaining <= 0:
                    return events
                time.sleep(min(0.005, remaining))
        log = self._keys(run_id).log
        # BLOCK 0 would wait forever: a timeout is always finite here.
        reply = self._r.xread({log: after_id or "0-0"}, block=max(int(timeout_ms), 1))
        return self._events(run_id, _xread_entries(reply))

    def outcome_id(self, run_id: str, key: str) -> str | None:
        found = self._r.hget(self._keys(run_id).outcomes, key)
        return None if found is None else _text(found)

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
        reply = self._append(run_id, token, events, status, outbox, retention_ms, read_after="")
        return [_text(i) for i in reply]

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
        ids, entries, _ = self._append_read(
            run_id, token, events, after_id, known, status, outbox, retention_ms, None
        )
        return ids, entries

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
        finish = ("-", 0, ()) if waitfor is None else (waitfor.mode, waitfor.missing, waitfor.cids)
        return self._append_read(run_id, token, events, after_id, known, None, (), None, finish)

    def _append_read(
        self,
        run_id: str,
        token: str,
        events: Sequence[NewEvent],
        after_id: str | None,
        known: int | None,
        status: str | None,
        outbox: Sequence[str],
        retention_ms: int | None,
        finish: tuple[str, int, Sequence[str]] | None,
    ) -> tuple[list[str], list[Event], bool]:
        read_after = "-" if after_id is None else check_entry_id(after_id)
        ids, others, promoted, finished = self._append(
            run_id, token, events, status, outbox, retention_ms, read_after, finish, known
        )
        texts = [_text(i) for i in ids]
        # Entries others appended and early outcomes promoted are rare: most appends read back
        # only their own entries, rebuilt from what they sent.
        read = self._events(run_id, ((i, _pairs(f)) for i, f in others)) if others else []
        read += own_entries(events, texts, read[-1].entry_id if read else after_id)
        if promoted:
            read += self._events(run_id, ((i, _pairs(f)) for i, f in promoted))
        return texts, read, finished == 1

    def _append(
        self,
        run_id: str,
        token: str,
        events: Sequence[NewEvent],
        status: str | None,
        outbox: Sequence[str],
        retention_ms: int | None,
        read_after: str,
        finish: tuple[str, int, Sequence[str]] | None = None,
        known: int | None = None,
    ) -> Any:
        k = self._keys(run_id)
        retention = retention_for(status, retention_ms)
        mode, missing, cids = finish if finish is not None else ("", 0, ())
        args: list[Any] = [token, status or "", len(events), retention or "", read_after]
        args += [mode, int(missing), "" if known is None else int(known), len(cids), *cids]
        payloads = _Payloads(self._large)
        for event in events:
            args += [*payloads.args(event), outcome_key(event), call_identity(event)]
        args += outbox
        reply = self._scripts.append_fenced(
            keys=k.fenced,
            args=args,
            before=payloads.write(k.payloads),
        )
        if reply == _LEASE_LOST:
            raise lease_lost(run_id)
        if reply == _NO_RUN:
            raise run_not_found(run_id)
        return reply

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
        """Raises RunNotFound when the run does not exist (e.g. deleted before a late outcome)."""
        k = self._keys(run_id)
        payloads = _Payloads(self._large)
        args = [key, "1" if wake else "0", *payloads.args(event), "1" if force else "0"]
        args.append(identity or "")
        reply = self._scripts.record_outcome(
            keys=[k.meta, k.outcomes, k.log, k.wake, k.waitfor, k.early, k.payloads],
            args=args,
            before=payloads.write(k.payloads),
        )
        if reply == _NO_RUN:
            raise run_not_found(run_id)
        entry_id, created, woke = reply
        if created in (_PARKED, _DROPPED):
            return _early(created)
        return OutcomeResult(_text(entry_id), created == 1, woke == 1)

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
        check_lease_args(token, ttl_ms)
        k = self._keys(run_id)
        after = "-" if after_id is None else check_entry_id(after_id)
        payloads = _Payloads(self._large)
        args = [key, *payloads.args(event), token, int(ttl_ms), after, identity or ""]
        reply = self._scripts.record_and_begin(
            keys=[
                k.meta,
                k.outcomes,
                k.log,
                k.wake,
                k.waitfor,
                k.lease,
                k.outbox,
                k.early,
                k.payloads,
            ],
            args=args,
            before=payloads.write(k.payloads),
        )
        if reply == _NO_RUN:
            raise run_not_found(run_id)
        if reply[1] in (_PARKED, _DROPPED):
            return _early(reply[1]), None
        outcome = OutcomeResult(_text(reply[0]), reply[1] == 1, reply[2] == 1)
        if not outcome.wake:
            return outcome, None
        if reply[3] != 1:
            return outcome, PassStart(False, lease_ms=self.lease_ttl_ms(run_id))
        entries = self._events(run_id, ((i, _pairs(f)) for i, f in reply[5]), payloads.refs)
        return outcome, PassStart(True, sorted(_text(m) for m in reply[4]), entries)

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
        check_rising(after_id, [e.entry_id for e in (outcome, *scheduled)])
        k = self._keys(run_id)
        mode, missing, cids = (
            ("-", 0, ()) if waitfor is None else (waitfor.mode, waitfor.missing, waitfor.cids)
        )
        args: list[Any] = [token, int(ttl_ms), after_id, key, identity or "", len(scheduled)]
        args += [mode, int(missing), len(cids), *cids]
        payloads = _Payloads(self._large)
        args += [outcome.entry_id, *payloads.args(_new(outcome))]
        for event in scheduled:
            new = _new(event)
            args += [event.entry_id, *payloads.args(new), call_identity(new)]
        reply = self._scripts.record_ahead(
            keys=k.fenced,
            args=args,
            before=payloads.write(k.payloads),
        )
        status = {1: "begun", 2: "finished", 3: "continued"}.get(int(reply[0]), "refused")
        if status == "refused":
            return AheadResult(status, reason=_text(reply[1]))
        promoted = (
            self._events(run_id, ((i, _pairs(f)) for i, f in reply[1]))
            if status == "continued"
            else []
        )
        return AheadResult(status, promoted)

    # -- orchestration ----------------------------------------------------------------------------
    def acquire_lease(self, run_id: str, token: str, ttl_ms: int) -> bool:
        """Take the lease, or renew it (for ``ttl_ms``) when ``token`` already holds it."""
        check_lease_args(token, ttl_ms)
        lease = self._keys(run_id).lease
        return bool(self._scripts.acquire_lease(keys=[lease], args=[token, int(ttl_ms)]) == 1)

    def begin_pass(self, run_id: str, token: str, ttl_ms: int, after_id: str | None) -> PassStart:
        check_lease_args(token, ttl_ms)
        k = self._keys(run_id)
        after = "-" if after_id is None else check_entry_id(after_id)
        reply = self._scripts.begin_pass(
            keys=[k.lease, k.outbox, k.log], args=[token, int(ttl_ms), after]
        )
        if int(reply[0]) == 0:
            return PassStart(False, lease_ms=max(int(reply[1]), 0))
        entries = self._events(run_id, ((i, _pairs(f)) for i, f in reply[2]))
        return PassStart(True, sorted(_text(m) for m in reply[1]), entries)

    def read_step_input(
        self, run_id: str, outcome_key: str, entry_id: str
    ) -> tuple[str | None, Event | None]:
        k = self._keys(run_id)
        pipe = self._r.pipeline(transaction=False)
        pipe.hget(k.outcomes, outcome_key)
        pipe.xrange(k.log, entry_id, entry_id, count=1)
        found, entries = pipe.execute()
        return (
            None if found is None else _text(found),
            self._events(run_id, entries)[0] if entries else None,
        )

    def lease_ttl_ms(self, run_id: str) -> int:
        return max(int(self._r.pttl(self._keys(run_id).lease)), 0)

    def lease_holder(self, run_id: str) -> str | None:
        """The token holding the run's lease, if any (for diagnostics)."""
        value = self._r.get(self._keys(run_id).lease)
        return None if value is None else split_lease(value)[1]

    def finish_pass(
        self, run_id: str, token: str, last_id: str, waitfor: WaitFor | None = None
    ) -> bool:
        """Raises LeaseLost when ``token`` no longer holds the lease (nothing is cleared)."""
        k = self._keys(run_id)
        args: list[Any] = [token, last_id, "", 0]
        if waitfor is not None:
            args = [token, last_id, waitfor.mode, waitfor.missing, *waitfor.cids]
        reply = self._scripts.finish_pass(
            keys=[k.lease, k.log, k.outbox, k.wake, k.waitfor], args=args
        )
        if reply == _LEASE_LOST:
            raise lease_lost(run_id)
        return bool(reply == 1)

    def release_lease(self, run_id: str, token: str) -> None:
        self._scripts.release_lease(keys=[self._keys(run_id).lease], args=[token])

    def claim_redelivery(self, run_id: str, idle_ms: int) -> bool:
        meta = self._keys(run_id).meta
        return bool(self._scripts.claim_redelivery(keys=[meta], args=[int(idle_ms)]) == 1)

    def request_wake(self, run_id: str) -> bool:
        """Raises RunNotFound when the run does not exist (no orphan flag is left behind)."""
        k = self._keys(run_id)
        reply = self._scripts.request_wake(keys=[k.meta, k.wake], args=[])
        if reply == _NO_RUN:
            raise run_not_found(run_id)
        return bool(reply == 1)

    def wake_pending(self, run_id: str) -> bool:
        """Whether the run's wake flag is set (a pass is queued or running)."""
        return bool(self._r.exists(self._keys(run_id).wake))

    def pending_outbox(self, run_id: str) -> list[str]:
        return sorted(_text(m) for m in self._r.smembers(self._keys(run_id).outbox))

    # -- timers -----------------------------------------------------------------------------------
    def add_timer(
        self, kind: str, run_id: str, cid: str, delay_ms: int, data: dict[str, Any]
    ) -> int:
        """Deadline = Redis server time + ``delay_ms``. Re-adding the same timer (same kind,
        run, cid and data) keeps its first deadline."""
        keys.validate_run_id(run_id)
        member = encode_timer(kind, run_id, cid, data)
        return int(
            self._scripts.add_timer(keys=[keys.timers(self.prefix)], args=[member, int(delay_ms)])
        )

    def claim_due_timers(self, claim_ms: int, limit: int = 100) -> list[DueTimer]:
        members = self._scripts.claim_due_timers(
            keys=[keys.timers(self.prefix)], args=[int(claim_ms), int(limit)]
        )
        return decode_due(members, self.remove_timer)

    def remove_timer(self, member: str) -> None:
        self._r.zrem(keys.timers(self.prefix), member)

    def now_ms(self) -> int:
        seconds, micros = self._r.time()
        return int(seconds) * 1000 + int(micros) // 1000


def _pairs(flat: list[Any]) -> dict[Any, bytes]:
    """A stream entry's fields as a script returns them (``[f1, v1, f2, v2...]``) as a dict."""
    return dict(zip(flat[::2], flat[1::2], strict=True))


def _xread_entries(reply: Any) -> list[Any]:
    """Entries of a one-stream XREAD reply, under RESP2 ``[[key, entries]]`` or RESP3
    ``{key: [entries]}`` (redis-py wraps RESP3 entry lists once more)."""
    if not reply:
        return []
    per_stream = list(reply.values()) if isinstance(reply, dict) else [s[1] for s in reply]
    found: list[Any] = []
    for entries in per_stream:
        if entries and isinstance(entries[0], list):
            entries = entries[0]
        found.extend(entries)
    return found


def _new(event: Event) -> NewEvent:
    return NewEvent(event.kind, event.cid, event.meta, event.payload)
