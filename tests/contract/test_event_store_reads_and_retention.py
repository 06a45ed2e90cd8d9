"""The event store contract, part 4: the tail read, append-and-read in one step, and retention
(a finished run is deleted whole after its retention, never trimmed). Runs on every store kind."""

from __future__ import annotations

import time

import pytest

from durable_celery.errors import LeaseLost, RunNotFound
from durable_celery.replay.events import (
    MARKER,
    RUN_COMPLETED,
    RUN_STARTED,
    SIGNAL_RECEIVED,
    STEP_COMPLETED,
    STEP_SCHEDULED,
    NewEvent,
)
from durable_celery.store import EventStore

from .support import finish, make_run, started, wait_until

pytestmark = pytest.mark.timeout(60)


# -- read_last ------------------------------------------------------------------------------------
def test_read_last_returns_the_newest_entries_oldest_first(store: EventStore) -> None:
    make_run(store)
    assert store.acquire_lease("r1", "t", 10_000)
    store.append_fenced("r1", "t", [NewEvent(MARKER, f"m{i}") for i in range(4)])
    everything = store.read_since("r1", None)
    assert store.read_last("r1") == everything[-1:]
    assert [e.cid for e in store.read_last("r1", 3)] == ["m1", "m2", "m3"]
    assert store.read_last("r1", 100) == everything
    assert store.read_last("r1", 0) == []
    assert store.read_last("nope", 5) == []


# -- append_fenced_and_read -----------------------------------------------------------------------
def test_append_and_read_returns_the_new_ids_and_everything_since_the_last_read(
    store: EventStore,
) -> None:
    make_run(store)
    assert store.acquire_lease("r1", "t", 10_000)
    ids, seen = store.append_fenced_and_read(
        "r1", "t", [NewEvent(STEP_SCHEDULED, "s1", {"n": 1})], after_id=None, outbox=["s1"]
    )
    assert [e.kind for e in seen] == [RUN_STARTED, STEP_SCHEDULED]
    assert ids == [seen[-1].entry_id]
    assert store.pending_outbox("r1") == ["s1"]

    # A worker records an outcome between the orchestrator's two round trips.
    late = store.record_outcome("r1", "s1", NewEvent(STEP_COMPLETED, "s1", {}, b"\x00\xffok"))
    ids2, seen2 = store.append_fenced_and_read(
        "r1", "t", [NewEvent(STEP_SCHEDULED, "s2")], after_id=seen[-1].entry_id
    )
    assert [(e.kind, e.cid, e.payload) for e in seen2] == [
        (STEP_COMPLETED, "s1", b"\x00\xffok"),
        (STEP_SCHEDULED, "s2", None),
    ]
    assert [e.entry_id for e in seen2] == [late.entry_id, *ids2]
    assert seen2 == store.read_since("r1", seen[-1].entry_id)
    assert store.append_fenced_and_read("r1", "t", [], after_id=ids2[0]) == ([], [])


def test_append_and_read_told_how_many_entries_were_read_returns_others_all_the_same(
    store: EventStore,
) -> None:
    make_run(store)
    assert store.acquire_lease("r1", "t", 10_000)
    read = store.read_since("r1", None)
    ids, seen = store.append_fenced_and_read(
        "r1", "t", [NewEvent(MARKER, "m1")], after_id=read[-1].entry_id, known=len(read)
    )
    assert [e.entry_id for e in seen] == ids  # nobody else appended: its own entry only
    late = store.record_outcome("r1", "s1", NewEvent(STEP_COMPLETED, "s1", {}, b"ok"))
    ids2, seen2 = store.append_fenced_and_read(
        "r1", "t", [NewEvent(MARKER, "m2")], after_id=ids[0], known=len(read) + 1
    )
    assert [e.entry_id for e in seen2] == [late.entry_id, *ids2]
    assert seen2 == store.read_since("r1", ids[0])
    signal = store.record_outcome("r1", "x1", NewEvent(SIGNAL_RECEIVED, "x1", {}))
    ids3, seen3, finished = store.append_and_finish(
        "r1", "t", [NewEvent(MARKER, "m3")], after_id=ids2[0], known=len(read) + 3, waitfor=None
    )
    assert not finished  # the signal came in meanwhile: the pass goes on
    assert [e.entry_id for e in seen3] == [signal.entry_id, *ids3]
    _, seen4, finished = store.append_and_finish(
        "r1", "t", [NewEvent(MARKER, "m4")], after_id=ids3[0], known=len(read) + 5, waitfor=None
    )
    assert finished and [e.cid for e in seen4] == ["m4"]


def test_append_and_read_keeps_outcomes_append_once(store: EventStore) -> None:
    make_run(store)
    recorded = store.record_outcome("r1", "s1", NewEvent(STEP_COMPLETED, "s1"))
    assert store.acquire_lease("r1", "t", 10_000)
    ids, seen = store.append_fenced_and_read(
        "r1", "t", [NewEvent(STEP_COMPLETED, "s1"), NewEvent(MARKER)], after_id=recorded.entry_id
    )
    assert ids[0] == recorded.entry_id
    assert [(e.entry_id, e.kind) for e in seen] == [(ids[1], MARKER)]


def test_append_and_read_without_the_lease_raises_and_writes_nothing(store: EventStore) -> None:
    make_run(store)
    before = store.read_since("r1", None)
    with pytest.raises(LeaseLost):
        store.append_fenced_and_read("r1", "t", [NewEvent(MARKER)], after_id=None)
    assert store.acquire_lease("r1", "holder", 10_000)
    with pytest.raises(LeaseLost):
        store.append_fenced_and_read(
            "r1", "intruder", [NewEvent(STEP_COMPLETED, "s1")], after_id=None,
            status="completed", outbox=["x"], retention_ms=100,
        )  # fmt: skip
    assert store.read_since("r1", None) == before
    assert store.outcome_id("r1", "s1") is None
    assert store.pending_outbox("r1") == []
    record = store.get_run("r1")
    assert record is not None and record.status == "running"


def test_append_and_read_checks_its_arguments_before_writing(store: EventStore) -> None:
    make_run(store)
    before = store.read_since("r1", None)
    assert store.acquire_lease("r1", "t", 10_000)
    with pytest.raises(ValueError, match="entry id"):
        store.append_fenced_and_read("r1", "t", [NewEvent(MARKER)], after_id="not-an-id")
    with pytest.raises(ValueError, match="retention"):
        store.append_fenced_and_read(
            "r1", "t", [NewEvent(MARKER)], after_id=None, status="completed", retention_ms=0
        )
    assert store.read_since("r1", None) == before
    assert store.acquire_lease("ghost", "t", 10_000)
    with pytest.raises(RunNotFound):
        store.append_fenced_and_read("ghost", "t", [NewEvent(MARKER)], after_id=None)


# -- retention ------------------------------------------------------------------------------------
def gone(store: EventStore, run_id: str) -> bool:
    return store.get_run(run_id) is None


def test_a_finished_run_with_a_retention_vanishes_whole_later(store: EventStore) -> None:
    make_run(store, "r1")
    make_run(store, "r2")
    store.record_outcome("r1", "s1", NewEvent(STEP_COMPLETED, "s1"))
    assert store.acquire_lease("r1", "t", 10_000)
    store.append_fenced(
        "r1", "t", [NewEvent(RUN_COMPLETED)], status="completed", outbox=["x"], retention_ms=400
    )
    record = store.get_run("r1")
    assert record is not None and record.status == "completed"  # retained for now
    assert [e.kind for e in store.read_last("r1")] == [RUN_COMPLETED]
    wait_until(lambda: gone(store, "r1"), timeout=2.0)
    assert store.read_since("r1", None) == []
    assert store.read_last("r1") == []
    assert store.outcome_id("r1", "s1") is None
    assert store.pending_outbox("r1") == []
    assert not store.wake_pending("r1")
    assert store.lease_holder("r1") is None
    assert [r.run_id for r in store.list_runs()] == ["r2"]
    with pytest.raises(RunNotFound):
        store.record_outcome("r1", "s2", NewEvent(STEP_COMPLETED, "s2"))
    assert store.create_run("r1", "wf", started(), {})  # the id is free again
    assert [e.kind for e in store.read_since("r1", None)] == [RUN_STARTED]


def test_append_and_read_can_finish_a_run_with_a_retention(store: EventStore) -> None:
    make_run(store)
    assert store.acquire_lease("r1", "t", 10_000)
    ids, seen = store.append_fenced_and_read(
        "r1", "t", [NewEvent(RUN_COMPLETED)], after_id=None, status="cancelled", retention_ms=200
    )
    assert [e.entry_id for e in seen[1:]] == ids
    wait_until(lambda: gone(store, "r1"), timeout=2.0)
    assert store.list_runs() == []


def test_what_a_retained_run_gains_after_finishing_vanishes_with_it(store: EventStore) -> None:
    make_run(store)
    assert store.acquire_lease("r1", "t", 10_000)
    store.append_fenced("r1", "t", [NewEvent(RUN_COMPLETED)], status="failed", retention_ms=800)
    finish(store)  # clears the wake flag, outbox and lease
    assert store.acquire_lease("r1", "t2", 10_000)
    store.append_fenced("r1", "t2", [NewEvent(MARKER)], outbox=["again"])
    # The first outcome of the run, and (below) a new wake flag, both created after it finished;
    # the late outcome is kept but does not wake a finished run.
    late = store.record_outcome("r1", "late", NewEvent(STEP_COMPLETED, "late"))
    assert late.created and not late.wake
    finish(store, token="t2")
    assert store.request_wake("r1")
    wait_until(lambda: gone(store, "r1"), timeout=3.0)
    assert not store.wake_pending("r1")
    assert store.pending_outbox("r1") == []
    assert store.outcome_id("r1", "late") is None
    assert store.read_since("r1", None) == []


def test_a_live_run_never_expires_whatever_retention_is_passed(store: EventStore) -> None:
    make_run(store)
    assert store.acquire_lease("r1", "t", 10_000)
    store.append_fenced("r1", "t", [NewEvent(MARKER)], retention_ms=50)
    store.append_fenced("r1", "t", [NewEvent(MARKER)], status="running", retention_ms=50)
    store.append_fenced("r1", "t", [], status="blocked", retention_ms=50)
    time.sleep(0.15)
    record = store.get_run("r1")
    assert record is not None and record.status == "blocked"
    assert len(store.read_since("r1", None)) == 3
    assert [r.run_id for r in store.list_runs()] == ["r1"]


def test_a_retention_must_be_positive_and_nothing_is_written_otherwise(store: EventStore) -> None:
    make_run(store)
    before = store.read_since("r1", None)
    assert store.acquire_lease("r1", "t", 10_000)
    for bad in (0, -1):
        with pytest.raises(ValueError, match="retention"):
            store.append_fenced("r1", "t", [NewEvent(MARKER)], status="completed", retention_ms=bad)
    assert store.read_since("r1", None) == before
    record = store.get_run("r1")
    assert record is not None and record.status == "running"
