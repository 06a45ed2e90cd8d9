"""How events, timers and leases are laid out inside storage; shared by both stores.

Both stores keep an entry as the same field map and decode it with the same function, so a
history read from Redis and one read from memory are equal ``Event`` objects:

* ``k`` kind, ``c`` correlation id (may be empty), ``m`` msgpack of the meta dict,
* ``p`` the payload blob, present only when the payload is not None (``b""`` stays ``b""``),
* or instead ``b``, the reference of a payload kept beside the log (the Redis store keeps large
  payloads in a hash of their own; it resolves references on every read, see
  ``RedisEventStore``).
"""

from __future__ import annotations

import itertools
import json
import logging
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import msgpack

from ..replay.events import OUTCOME_KINDS, STEP_SCHEDULED, Event, NewEvent
from .base import DueTimer, RunRecord

__all__ = [
    "RESERVED_META",
    "decode_due",
    "decode_entry",
    "decode_run",
    "decode_timer",
    "check_extra",
    "check_entry_id",
    "encode_fields",
    "encode_timer",
    "event_args",
    "outcome_key",
    "call_identity",
    "identity_key",
    "own_entries",
    "payload_ref",
    "as_recorded",
    "following_ids",
    "check_rising",
    "scheduled_key",
    "split_lease",
]

_log = logging.getLogger("durable_celery.store")

#: Meta hash fields the store owns; the rest are a run's ``extra`` fields.
RESERVED_META = frozenset({"workflow", "status", "created_ms", "updated_ms", "redelivered_ms"})


def pack_meta(meta: Mapping[str, Any]) -> bytes:
    return msgpack.packb(dict(meta), use_bin_type=True)  # type: ignore[no-any-return]


def encode_fields(event: NewEvent) -> dict[str, bytes]:
    fields = {"k": event.kind.encode(), "c": event.cid.encode(), "m": pack_meta(event.meta)}
    if event.payload is not None:
        fields["p"] = bytes(event.payload)
    return fields


def outcome_key(event: NewEvent) -> str:
    """The append-once key of an event appended by the orchestrator: its cid, for outcomes;
    ``>cid`` for a step's scheduling, which also tells a step sent before its scheduling was
    recorded whether it is in yet (see ``record_outcome``). A scheduling settled in the same
    append (an inline step) is not kept under ``>cid``: its outcome key answers for it."""
    if not event.cid:
        return ""
    if event.kind in OUTCOME_KINDS:
        return event.cid
    return scheduled_key(event.cid) if event.kind == STEP_SCHEDULED else ""


def scheduled_key(cid: str) -> str:
    """The outcomes-hash key of a step's ``step_scheduled`` entry."""
    return f">{cid}"


def call_identity(event: NewEvent) -> str:
    """What a ``step_scheduled`` entry calls, ``<name>:<argument hash>`` ("" for other kinds):
    an outcome of a step sent before its scheduling was recorded enters the log only after an
    entry for the same call (see ``record_outcome``)."""
    if event.kind != STEP_SCHEDULED:
        return ""
    return f"{event.meta.get('name', '')}:{event.meta.get('h', '')}"


def identity_key(cid: str) -> str:
    """The outcomes-hash key holding the identity of the call scheduled under ``cid``."""
    return f"={cid}"


def event_args(event: NewEvent, ref: str | None = None) -> list[str | bytes]:
    """The ARGV slots the Lua scripts take per event: kind, cid, meta, then the field that holds
    the payload ("" none, "p" the payload, "b" a reference to it) and its value. ``ref``: the
    payload is kept beside the log under this reference."""
    if event.payload is None:
        field, value = "", b""
    elif ref is not None:
        field, value = "b", ref.encode()
    else:
        field, value = "p", bytes(event.payload)
    return [event.kind, event.cid, pack_meta(event.meta), field, value]


def payload_ref(fields: Mapping[Any, bytes]) -> str | None:
    """The reference of an entry's payload kept beside the log, if it has one."""
    ref = fields.get(b"b", fields.get("b"))
    return None if ref is None else _text(ref)


def own_entries(
    events: Sequence[NewEvent], ids: Sequence[str], last_seen: str | None
) -> list[Event]:
    """The entries an append just added, rebuilt from what was sent instead of read back.

    ``ids[i]`` belongs to ``events[i]``; an outcome that was already recorded got its existing
    (older) id and was not appended, so only ids after ``last_seen`` are new. Meta goes through
    the same msgpack round trip as a read, so the result equals what XRANGE would give.
    """
    floor = _id_key(last_seen) if last_seen else (0, -1)
    own: list[Event] = []
    for event, entry_id in zip(events, ids, strict=True):
        key = _id_key(entry_id)
        if key > floor:
            own.append(Event(entry_id, event.kind, event.cid, _as_read(event.meta), event.payload))
            floor = key
    return own


def as_recorded(event: NewEvent, entry_id: str) -> Event:
    """``event`` as a read will return it once it is recorded under ``entry_id``."""
    return Event(entry_id, event.kind, event.cid, _as_read(event.meta), event.payload)


def check_rising(after_id: str, entry_ids: Iterable[str]) -> None:
    """Refuse chosen entry ids that do not rise above ``after_id`` in order, before any write."""
    ordered = [_id_key(check_entry_id(after_id))]
    ordered += [_id_key(check_entry_id(i)) for i in entry_ids]
    if any(a >= b for a, b in itertools.pairwise(ordered)):
        raise ValueError(f"entry ids {list(entry_ids)} must rise above {after_id}, in order")


def following_ids(entry_id: str, count: int) -> list[str]:
    """The ``count`` stream ids right after ``entry_id`` within its millisecond."""
    ms, seq = _id_key(entry_id)
    return [f"{ms}-{seq + i}" for i in range(1, count + 1)]


_SCALARS = (str, int, float, bool, type(None), bytes)


def _as_read(meta: Mapping[str, Any]) -> dict[str, Any]:
    """``meta`` as a read would return it. Scalars and bytes (an inline step's input) come back
    as themselves, so a copy will do; anything else (a tuple comes back as a list) takes the
    msgpack round trip."""
    for value in meta.values():
        if type(value) not in _SCALARS:
            return msgpack.unpackb(pack_meta(meta), raw=False, strict_map_key=False)  # type: ignore[no-any-return]
    return dict(meta)


def _id_key(entry_id: str) -> tuple[int, int]:
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq or 0)


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def decode_entry(entry_id: bytes | str, fields: Mapping[Any, bytes]) -> Event:
    """Build an :class:`Event` from a stream entry (keys may be bytes or str)."""
    get = {_text(k): v for k, v in fields.items()}
    meta = msgpack.unpackb(get["m"], raw=False, strict_map_key=False) if "m" in get else {}
    return Event(
        entry_id=_text(entry_id),
        kind=_text(get["k"]),
        cid=_text(get.get("c", b"")),
        meta=meta,
        payload=get.get("p"),
    )


def encode_timer(kind: str, run_id: str, cid: str, data: Mapping[str, Any]) -> str:
    """A timer's zset member. Canonical JSON, so registering the same timer twice is one timer.

    ``data`` must be JSON-serialisable and small (attempt numbers, names); it is part of the
    timer's identity.
    """
    return json.dumps([kind, run_id, cid, dict(data)], sort_keys=True, separators=(",", ":"))


def decode_timer(member: bytes | str) -> DueTimer:
    kind, run_id, cid, data = json.loads(_text(member))
    return DueTimer(member=_text(member), kind=kind, run_id=run_id, cid=cid, data=data)


def decode_due(members: Iterable[bytes | str], remove: Callable[[str], None]) -> list[DueTimer]:
    """Decode claimed timer members. A member that is not ours (written by hand, or by an
    incompatible version) is removed with a warning: left in place it would come back forever."""
    due: list[DueTimer] = []
    for member in members:
        try:
            due.append(decode_timer(member))
        except (ValueError, TypeError, UnicodeDecodeError):
            _log.warning("dropping malformed durable timer %r", member)
            remove(_text(member))
    return due


_ENTRY_ID = re.compile(r"\d+(-\d+)?")


def check_entry_id(entry_id: str) -> str:
    """Refuse what is not a stream entry id (``<ms>-<seq>`` or ``<ms>``) before any write: an
    error inside a Lua script would not undo the writes it made before failing."""
    if not isinstance(entry_id, str) or not _ENTRY_ID.fullmatch(entry_id):
        raise ValueError(f"invalid stream entry id {entry_id!r}; expected '<ms>-<seq>'")
    return entry_id


def split_lease(value: bytes | str) -> tuple[int, str]:
    """A lease value is ``"<ttl_ms>:<token>"``: holding the ttl lets a fenced append renew the
    lease for as long as it was acquired, without every caller passing it again."""
    ttl, _, token = _text(value).partition(":")
    return int(ttl), token


def decode_run(run_id: str, fields: Mapping[Any, Any]) -> RunRecord | None:
    """Build a :class:`RunRecord` from a meta hash (None when the hash is empty or missing)."""
    if not fields:
        return None
    extra = {_text(k): _text(v) for k, v in fields.items()}
    return RunRecord(
        run_id=run_id,
        workflow=extra.pop("workflow", ""),
        status=extra.pop("status", ""),
        created_ms=int(extra.pop("created_ms", "0")),
        updated_ms=int(extra.pop("updated_ms", "0")),
        extra={k: v for k, v in extra.items() if k not in RESERVED_META},
    )


def check_extra(extra: Mapping[str, str]) -> None:
    """Refuse extra meta fields that would overwrite the store's own."""
    clash = RESERVED_META.intersection(extra)
    if clash:
        raise ValueError(
            f"extra run fields {sorted(clash)} clash with the store's own; rename them"
        )
    for name, value in extra.items():
        if not isinstance(name, str) or not isinstance(value, str):
            raise ValueError(f"extra run field {name!r}: names and values must be str")
