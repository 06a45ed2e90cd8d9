"""The event store contract, part 1: runs, the log, append-once outcomes.

Every store (memory, fakeredis, real Redis) passes this one suite: the ``store`` fixture
(tests/conftest.py) runs each test once per store kind. Part 2 is ``test_event_store_passes``.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from durable_celery.errors import RunNotFound
from durable_celery.replay.events import (
    MARKER,
    RUN_STARTED,
    STEP_COMPLETED,
    STEP_FAILED,
    STEP_SCHEDULED,
    TIMER_FIRED,
    TIMER_STARTED,
    NewEvent,
)
from durable_celery.store import EventStore

from .support import ENTRY_ID, last_id, make_run, shape, started

pytestmark = pytest.mark.timeout(60)


# -- runs -----------------------------------------------------------------------------------------
def test_a_run_is_created_once_and_a_second_create_changes_nothing(store: EventStore) -> None:
    assert store.create_run("r1", "wf", started(n=1), {"queue": "a"})
    before = store.read_since("r1", None)
    assert not store.create_run("r1", "other", started(n=2), {"queue": "b"})
    assert store.read_since("r1", None) == before
    record = store.get_run("r1")
    assert record is not None
    assert (record.workflow, record.extra) == ("wf", {"queue": "a"})


def test_a_new_run_is_running_stamped_and_flagged_for_a_wake(store: EventStore) -> None:
    make_run(store)
    record = store.get_run("r1")
    (first,) = store.read_since("r1", None)
    assert record is not None
    assert record.status == "running"
    assert record.created_ms == record.updated_ms == first.millis
    assert store.wake_pending("r1")
    assert not store.request_wake("r1")  # already set: whoever created it enqueues the pass


def test_create_run_refuses_a_wrong_first_entry_and_reserved_extra_fields(
    store: EventStore,
) -> None:
    with pytest.raises(ValueError, match="run_started"):
        store.create_run("r1", "wf", NewEvent(MARKER), {})
    with pytest.raises(ValueError, match="status"):
        store.create_run("r1", "wf", started(), {"status": "x"})
    assert store.get_run("r1") is None
    assert store.read_since("r1", None) == []


@pytest.mark.parametrize("run_id", ["", "a{b", "a}b", "x" * 201])
def test_invalid_run_ids_are_refused_with_a_value_error(store: EventStore, run_id: str) -> None:
    with pytest.raises(ValueError, match="run id"):
        store.create_run(run_id, "wf", started(), {})


def test_an_unknown_run_has_no_record_log_outcomes_or_outbox(store: EventStore) -> None:
    assert store.get_run("nope") is None
    assert store.read_since("nope", None) == []
    assert store.outcome_id("nope", "s1") is None
    assert store.pending_outbox("nope") == []
    assert not store.wake_pending("nope")
    with pytest.raises(RunNotFound):
        store.request_wake("nope")
    with pytest.raises(RunNotFound):
        store.set_status("nope", "failed")
    assert store.get_run("nope") is None


def test_runs_are_listed_newest_first_and_filtered_by_status(store: EventStore) -> None:
    for run_id in ("a", "b", "c", "d"):
        make_run(store, run_id)
        time.sleep(0.003)  # distinct creation milliseconds
    store.set_status("b", "completed")
    store.set_status("d", "completed")
    assert [r.run_id for r in store.list_runs()] == ["d", "c", "b", "a"]
    assert [r.run_id for r in store.list_runs(limit=2)] == ["d", "c"]
    assert [r.run_id for r in store.list_runs(status="completed")] == ["d", "b"]
    assert [r.run_id for r in store.list_runs(status="running", limit=1)] == ["c"]
    assert store.list_runs(status="failed") == []


def test_set_status_changes_status_and_updated_time(store: EventStore) -> None:
    make_run(store)
    before = store.get_run("r1")
    time.sleep(0.003)
    store.set_status("r1", "blocked")
    after = store.get_run("r1")
    assert before is not None and after is not None
    assert after.status == "blocked"
    assert after.updated_ms > before.updated_ms
    assert after.created_ms == before.created_ms


def test_delete_run_removes_every_trace_of_the_run(store: EventStore) -> None:
    make_run(store)
    make_run(store, "other")
    assert store.acquire_lease("r1", "t", 10_000)
    store.append_fenced("r1", "t", [NewEvent(STEP_COMPLETED, "s1")], outbox=["s1"])
    assert store.delete_run("r1")
    assert store.get_run("r1") is None
    assert store.read_since("r1", None) == []
    assert store.outcome_id("r1", "s1") is None
    assert store.pending_outbox("r1") == []
    assert not store.wake_pending("r1")
    assert store.lease_ttl_ms("r1") == 0
    assert [r.run_id for r in store.list_runs()] == ["other"]
    assert not store.delete_run("r1")
    with pytest.raises(RunNotFound):
        store.record_outcome("r1", "s2", NewEvent(STEP_COMPLETED, "s2"))
    assert store.read_since("r1", None) == []  # a late outcome does not resurrect the log
    assert store.create_run("r1", "wf", started(), {})
    assert len(store.read_since("r1", None)) == 1


# -- the log --------------------------------------------------------------------------------------
def test_read_since_returns_only_the_entries_after_the_given_id(store: EventStore) -> None:
    make_run(store)
    assert store.acquire_lease("r1", "t", 10_000)
    ids = store.append_fenced("r1", "t", [NewEvent(MARKER, f"m{i}") for i in range(5)])
    everything = store.read_since("r1", None)
    assert [e.entry_id for e in everything[1:]] == ids
    assert [e.cid for e in store.read_since("r1", ids[1])] == ["m2", "m3", "m4"]
    assert store.read_since("r1", ids[-1]) == []
    assert store.read_since("r1", "0-0") == everything


def test_entry_ids_are_ordered_stream_ids(store: EventStore) -> None:
    make_run(store)
    assert store.acquire_lease("r1", "t", 10_000)
    for i in range(20):
        store.append_fenced("r1", "t", [NewEvent(MARKER, f"m{i}")])
    ids = [e.entry_id for e in store.read_since("r1", None)]
    assert all(ENTRY_ID.match(i) for i in ids)
    as_tuples = [tuple(int(p) for p in i.split("-")) for i in ids]
    assert as_tuples == sorted(set(as_tuples))


def test_read_entry_finds_one_entry_by_its_id(store: EventStore) -> None:
    make_run(store)
    assert store.acquire_lease("r1", "t", 10_000)
    (entry_id,) = store.append_fenced("r1", "t", [NewEvent(STEP_SCHEDULED, "s1", {"n": 1})])
    event = store.read_entry("r1", entry_id)
    assert event is not None
    assert (event.entry_id, event.kind, event.cid, event.meta) == (
        entry_id,
        STEP_SCHEDULED,
        "s1",
        {"n": 1},
    )
    ms = int(entry_id.split("-")[0])
    assert store.read_entry("r1", f"{ms + 1}-0") is None
    assert store.read_entry("nope", entry_id) is None


def test_events_read_back_equal_what_was_appended_in_every_store(store: EventStore) -> None:
    meta = {"name": "charge", "attempt": 2, "nested": {"ok": True, "xs": [1, 2.5, None, "é"]}}
    batch = [
        NewEvent(STEP_SCHEDULED, "s1", meta),
        NewEvent(MARKER, "", {}, b""),
        NewEvent(STEP_COMPLETED, "s1", {}, b"\x00\xffresult"),
        NewEvent(TIMER_FIRED, "t1", {"late_ms": 3}, None),
    ]
    assert store.create_run("r1", "wf", NewEvent(RUN_STARTED, "", {"code": "h"}, b"in"), {})
    assert store.acquire_lease("r1", "t", 10_000)
    store.append_fenced("r1", "t", batch)
    store.record_outcome("r1", "e1", NewEvent("event_received", "e1", {"k": b"raw"}, b"v"))
    assert shape(store.read_since("r1", None)) == [
        (RUN_STARTED, "", {"code": "h"}, b"in"),
        (STEP_SCHEDULED, "s1", meta, None),
        (MARKER, "", {}, b""),
        (STEP_COMPLETED, "s1", {}, b"\x00\xffresult"),
        (TIMER_FIRED, "t1", {"late_ms": 3}, None),
        ("event_received", "e1", {"k": b"raw"}, b"v"),
    ]


def test_read_blocking_returns_at_once_when_entries_are_there(store: EventStore) -> None:
    make_run(store)
    assert [e.kind for e in store.read_blocking("r1", None, 5_000)] == [RUN_STARTED]


def test_read_blocking_times_out_empty(store: EventStore) -> None:
    make_run(store)
    assert store.read_blocking("r1", last_id(store, "r1"), 50) == []


def test_read_blocking_wakes_up_for_an_entry_appended_meanwhile(store: EventStore) -> None:
    make_run(store)
    tail = last_id(store, "r1")
    timer = threading.Timer(0.1, store.record_outcome, ("r1", "s1", NewEvent(STEP_COMPLETED, "s1")))
    timer.start()
    try:
        events = store.read_blocking("r1", tail, 10_000)
    finally:
        timer.join()
    assert [e.cid for e in events] == ["s1"]


# -- append-once outcomes -------------------------------------------------------------------------
def test_an_outcome_is_recorded_once_per_key(store: EventStore) -> None:
    make_run(store)
    first = store.record_outcome("r1", "s1", NewEvent(STEP_COMPLETED, "s1", {}, b"one"))
    again = store.record_outcome("r1", "s1", NewEvent(STEP_FAILED, "s1", {}, b"two"))
    assert first.created and not again.created
    assert again.entry_id == first.entry_id == store.outcome_id("r1", "s1")
    assert shape(store.read_since("r1", None)[1:]) == [(STEP_COMPLETED, "s1", {}, b"one")]


def test_fenced_outcomes_are_append_once_under_their_cid(store: EventStore) -> None:
    make_run(store)
    recorded = store.record_outcome("r1", "s1", NewEvent(STEP_COMPLETED, "s1", {}, b"worker"))
    assert store.acquire_lease("r1", "t", 10_000)
    ids = store.append_fenced(
        "r1",
        "t",
        [
            NewEvent(STEP_COMPLETED, "s1", {}, b"inline"),  # already recorded: skipped
            NewEvent(TIMER_FIRED, "t1"),
            NewEvent(TIMER_FIRED, "t1"),  # twice in one batch: once
            NewEvent(STEP_SCHEDULED, "s2"),
            NewEvent(STEP_SCHEDULED, "s2"),  # a step is scheduled once, under ">s2"
            NewEvent(TIMER_STARTED, "t2"),
            NewEvent(TIMER_STARTED, "t2"),  # not an outcome, not a step: not append-once
        ],
    )
    assert ids[0] == recorded.entry_id
    assert ids[1] == ids[2] == store.outcome_id("r1", "t1")
    assert ids[3] == ids[4] == store.outcome_id("r1", ">s2")
    assert len(set(ids)) == 5
    assert [(e.kind, e.cid) for e in store.read_since("r1", recorded.entry_id)] == [
        (TIMER_FIRED, "t1"),
        (STEP_SCHEDULED, "s2"),
        (TIMER_STARTED, "t2"),
        (TIMER_STARTED, "t2"),
    ]
    again = store.record_outcome("r1", "t1", NewEvent(TIMER_FIRED, "t1"))
    assert not again.created and again.entry_id == ids[1]


def test_a_batch_of_thousands_is_recorded_append_once(store: EventStore) -> None:
    """More entries than one Lua call takes values: a gather of 2500 steps, then the same batch
    again (a pass that lost its reply), which adds nothing."""
    make_run(store)
    assert store.acquire_lease("r1", "t", 10_000)
    batch = [NewEvent(STEP_SCHEDULED, f"s{i}", {"name": "f", "h": "x"}) for i in range(2500)]
    ids = store.append_fenced("r1", "t", batch)
    assert len(set(ids)) == 2500
    assert store.append_fenced("r1", "t", batch) == ids
    assert store.outcome_id("r1", ">s2499") == ids[-1]
    assert len(store.read_since("r1", None)) == 2501


def test_racing_recorders_of_one_outcome_append_exactly_one_entry(store: EventStore) -> None:
    make_run(store)
    barrier = threading.Barrier(8)
    results: list[Any] = []
    lock = threading.Lock()

    def record(i: int) -> None:
        barrier.wait()
        result = store.record_outcome("r1", "s1", NewEvent(STEP_COMPLETED, "s1", {"by": i}))
        with lock:
            results.append(result)

    threads = [threading.Thread(target=record, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(results) == 8
    assert sum(r.created for r in results) == 1
    assert len({r.entry_id for r in results}) == 1
    assert [e.kind for e in store.read_since("r1", None)] == [RUN_STARTED, STEP_COMPLETED]
