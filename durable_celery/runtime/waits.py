"""External events: who waits on a key, delivering to them, buffering, de-duplication.

A wait registers a *hook* (event key -> run and correlation id) in Redis, so a sender in any
process finds the waiting run without a worker. Delivery is an append-once of the run's
``event_received`` outcome, so a hook raced by a timeout or a second sender delivers once.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..codec import Place
from ..errors import EventKeyInUse, EventNotDelivered
from ..replay import events as ev
from ..replay.commands import AwaitEvent
from ..replay.events import NewEvent

if TYPE_CHECKING:
    from .core import Runtime

__all__ = ["EventWaits", "BUFFER_PLACE_KIND"]

#: Buffered payloads belong to no run yet: they are bound to their key until delivered.
BUFFER_PLACE_KIND = "event_buffered"
_LIVE = ("running", "blocked")


def _owner(run_id: str, cid: str) -> str:
    return f"{run_id}\n{cid}"


class EventWaits:
    def __init__(self, runtime: Runtime) -> None:
        self.rt = runtime

    # -- the waiting side (inside an orchestration pass) ------------------------------------------
    def register(self, run_id: str, command: AwaitEvent) -> NewEvent | None:
        """Register the hook. Return an outcome to record at once (a buffered event, or the
        refusal when another live run waits on the key), else None.

        A buffered event is claimed, not taken: it leaves the buffer only when the caller has
        recorded it and calls :meth:`settle` (``meta["buffered"]``). A pass that dies in
        between claims the same event again when the wait is replayed."""
        rt, key, cid = self.rt, command.key, command.cid
        owner = _owner(run_id, cid)
        current = rt.store.register_hook(key, owner)
        if current is not None and current != owner:
            other_run, _, other_cid = current.partition("\n")
            if self._still_waiting(other_run, other_cid) or not rt.store.replace_hook(
                key, current, owner
            ):
                error = EventKeyInUse(
                    f"run {other_run} already waits for event {key!r}; two live runs cannot "
                    "wait on one key: include something unique to the run in the key "
                    "(e.g. f'review:{order_id}')"
                )
                payload = rt.codec.encode(error, Place(run_id, ev.EVENT_RECEIVED, cid))
                meta = {"key": key, "error": "EventKeyInUse"}
                return NewEvent(ev.EVENT_RECEIVED, cid, meta, payload)
        blob = rt.store.claim_buffered_event(key, owner)
        if blob is None:
            return None
        rt.store.delete_hook(key, owner)
        value = rt.codec.decode(blob, Place("", BUFFER_PLACE_KIND, key))
        payload = rt.codec.encode(value, Place(run_id, ev.EVENT_RECEIVED, cid))
        return NewEvent(ev.EVENT_RECEIVED, cid, {"key": key, "buffered": True}, payload)

    def settle(self, run_id: str, command: AwaitEvent) -> None:
        """The buffered event :meth:`register` returned is recorded: drop it from the buffer."""
        self.rt.store.settle_buffered_event(command.key, _owner(run_id, command.cid))

    def _still_waiting(self, run_id: str, cid: str) -> bool:
        record = self.rt.store.get_run(run_id)
        return (
            record is not None
            and record.status in _LIVE
            and self.rt.store.outcome_id(run_id, cid) is None
        )

    def time_out(self, run_id: str, cid: str, key: str) -> None:
        """The wait's timeout fired: record ``None`` as its outcome (once) and drop the hook."""
        rt = self.rt
        recorded = rt.store.record_outcome(
            run_id, cid, NewEvent(ev.EVENT_RECEIVED, cid, {"key": key, "timeout": True}), wake=True
        )
        rt.store.delete_hook(key, _owner(run_id, cid))
        if recorded.wake:
            rt.dispatcher.wake(run_id)

    # -- the sending side (any process) -----------------------------------------------------------
    def send(
        self, key: str, payload: Any, *, dedupe_id: str | None, buffer: bool, buffer_ttl: float
    ) -> bool:
        """Deliver to the run waiting on ``key``. True: delivered or buffered; False: a
        duplicate of ``dedupe_id`` already sent. Raises EventNotDelivered when nobody waits and
        ``buffer`` is off."""
        rt = self.rt
        if not isinstance(key, str) or not key:
            raise TypeError("send_event() needs a non-empty string key")
        rt.codec.pack(payload, label=f"send_event({key!r}) payload")  # refuse before any write
        ttl_ms = int(buffer_ttl * 1000)
        if dedupe_id is not None and not rt.store.claim_dedupe(key, dedupe_id, ttl_ms):
            return False
        try:
            if self._deliver(key, payload, dedupe_id):
                return True
            if buffer:
                blob = rt.codec.encode(payload, Place("", BUFFER_PLACE_KIND, key))
                rt.store.push_buffered_event(key, blob, ttl_ms)
                return True
        except BaseException:
            if dedupe_id is not None:
                rt.store.release_dedupe(key, dedupe_id)
            raise
        if dedupe_id is not None:
            rt.store.release_dedupe(key, dedupe_id)
        raise EventNotDelivered(
            f"no run is waiting for event {key!r}; send it with buffer=True to keep it for the "
            "next wait on that key"
        )

    def _deliver(self, key: str, payload: Any, dedupe_id: str | None) -> bool:
        rt = self.rt
        for _ in range(3):  # a stale hook is removed, then looked up again
            owner = rt.store.get_hook(key)
            if owner is None:
                return False
            run_id, _, cid = owner.partition("\n")
            blob = rt.codec.encode(payload, Place(run_id, ev.EVENT_RECEIVED, cid))
            meta: dict[str, Any] = {"key": key}
            if dedupe_id is not None:
                meta["dedupe"] = dedupe_id
            try:
                recorded = rt.store.record_outcome(
                    run_id, cid, NewEvent(ev.EVENT_RECEIVED, cid, meta, blob), wake=True
                )
            except LookupError:  # the run is gone
                recorded = None
            rt.store.delete_hook(key, owner)
            if recorded is not None and recorded.created:
                if recorded.wake:
                    rt.dispatcher.wake(run_id)
                return True
        return False
