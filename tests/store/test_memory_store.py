"""What only the memory store must take care of itself: its clock and its copies."""

from __future__ import annotations

import pytest

from durable_celery.replay.events import (
    MARKER,
    RUN_COMPLETED,
    RUN_STARTED,
    STEP_COMPLETED,
    NewEvent,
)
from durable_celery.store import MemoryEventStore


def test_entry_ids_keep_increasing_when_the_wall_clock_steps_back() -> None:
    clock = iter([5_000.0, 4_000.0, 4_000.0, 6_000.0])
    store = MemoryEventStore(clock=lambda: next(clock))
    assert store.create_run("r1", "wf", NewEvent(RUN_STARTED), {})
    for cid in ("a", "b", "c"):
        store.record_outcome("r1", cid, NewEvent(STEP_COMPLETED, cid))
    assert [e.entry_id for e in store.read_since("r1", None)] == [
        "5000000-0",
        "5000000-1",
        "5000000-2",
        "6000000-0",
    ]


def test_changing_an_event_read_back_does_not_change_the_log() -> None:
    store = MemoryEventStore()
    meta = {"items": [1, 2]}
    assert store.create_run("r1", "wf", NewEvent(RUN_STARTED, "", meta), {})
    meta["items"].append(3)
    (event,) = store.read_since("r1", None)
    event.meta["items"].append(4)
    assert store.read_since("r1", None)[0].meta == {"items": [1, 2]}


def test_timers_follow_the_clock_it_was_given() -> None:
    now = [1_000.0]
    store = MemoryEventStore(clock=lambda: now[0])
    assert store.add_timer("timer", "r1", "t1", 60_000, {}) == 1_060_000
    assert store.claim_due_timers(1_000) == []
    now[0] += 60
    assert [t.cid for t in store.claim_due_timers(1_000)] == ["t1"]


def test_retention_follows_the_clock_it_was_given() -> None:
    now = [1_000.0]
    store = MemoryEventStore(clock=lambda: now[0])
    assert store.create_run("r1", "wf", NewEvent(RUN_STARTED), {})
    assert store.acquire_lease("r1", "t", 10_000)
    store.append_fenced(
        "r1", "t", [NewEvent(RUN_COMPLETED)], status="completed", retention_ms=5_000
    )
    now[0] += 4.999
    assert store.get_run("r1") is not None
    assert [r.run_id for r in store.list_runs()] == ["r1"]
    now[0] += 0.001
    assert store.get_run("r1") is None
    assert store.list_runs() == []
    assert store.lease_holder("r1") is None
    assert not store.wake_pending("r1")


def test_buffered_events_and_dedupe_ids_expire_on_the_clock_it_was_given() -> None:
    now = [1_000.0]
    store = MemoryEventStore(clock=lambda: now[0])
    store.push_buffered_event("k", b"short", 1_000)
    store.push_buffered_event("k", b"long", 60_000)
    assert store.claim_dedupe("k", "d1", 1_000)
    now[0] += 0.999
    assert not store.claim_dedupe("k", "d1", 1_000)
    now[0] += 0.001
    assert store.claim_dedupe("k", "d1", 1_000)
    assert store.claim_buffered_event("k", "o") == b"long"
    assert store.settle_buffered_event("k", "o")
    assert store.claim_buffered_event("k", "o") is None


def test_a_wrong_count_of_entries_read_is_refused_before_anything_is_written() -> None:
    """The Redis store would skip its read on the count (see ``known``): here, where every
    fast test runs, a caller that miscounts fails loudly instead of missing entries."""
    store = MemoryEventStore()
    assert store.create_run("r1", "wf", NewEvent(RUN_STARTED), {})
    store.record_outcome("r1", "s1", NewEvent(STEP_COMPLETED, "s1"))
    before = store.read_since("r1", None)
    assert store.acquire_lease("r1", "t", 10_000)
    for known in (1, 3):
        with pytest.raises(ValueError, match=f"known={known} but the log of run r1 holds 2"):
            store.append_fenced_and_read(
                "r1", "t", [NewEvent(MARKER)], after_id=before[-1].entry_id, known=known
            )
        with pytest.raises(ValueError, match="holds 2 entries up to"):
            store.append_and_finish(
                "r1", "t", [NewEvent(MARKER)], after_id=before[-1].entry_id, known=known,
                waitfor=None,
            )  # fmt: skip
    assert store.read_since("r1", None) == before
    _, seen = store.append_fenced_and_read(
        "r1", "t", [NewEvent(MARKER, "m")], after_id=before[0].entry_id, known=1
    )
    assert [e.cid for e in seen] == ["s1", "m"]
