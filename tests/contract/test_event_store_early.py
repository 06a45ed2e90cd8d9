"""The event store contract, part 4: steps sent before their scheduling is recorded.

A pass sends a step whose input travels in its message, then records ``step_scheduled`` in the
append that finishes the pass (``append_and_finish``). An outcome that lands before that entry
is parked (``identity=`` the call it was sent for) and follows an entry for that call into the
log. Runs on every store kind.
"""

from __future__ import annotations

import pytest

from durable_celery.errors import LeaseLost
from durable_celery.replay.events import (
    SIGNAL_RECEIVED,
    STEP_COMPLETED,
    STEP_RETRYING,
    STEP_SCHEDULED,
    NewEvent,
)
from durable_celery.store import EventStore
from durable_celery.store.base import WaitFor

from .support import finish, last_id, make_run

pytestmark = pytest.mark.timeout(60)


def scheduled(cid: str, h: str = "h1") -> NewEvent:
    return NewEvent(STEP_SCHEDULED, cid, {"name": "charge", "h": h}, b"input-" + cid.encode())


CHARGE = "charge:h1"  # the identity of scheduled(cid): <name>:<argument hash>


def completed(cid: str, value: bytes = b"ok") -> NewEvent:
    return NewEvent(STEP_COMPLETED, cid, {"ms": 1}, value)


def kinds(store: EventStore, after: str | None = None) -> list[tuple[str, str]]:
    return [(e.kind, e.cid) for e in store.read_since("r1", after)]


def test_an_early_outcome_waits_unseen_until_its_step_is_scheduled_then_follows_it(
    store: EventStore,
) -> None:
    make_run(store)
    finish(store)  # the run's first pass: its wake flag is clear now
    start = last_id(store, "r1")
    parked = store.record_outcome("r1", "s1", completed("s1", b"paid"), identity=CHARGE)
    assert parked.parked and parked.created and not parked.wake
    assert kinds(store, start) == []  # not in the log: the step is not scheduled yet
    assert store.outcome_id("r1", "s1") is None
    assert not store.wake_pending("r1")

    assert store.acquire_lease("r1", "t", 10_000)
    ids, entries = store.append_fenced_and_read("r1", "t", [scheduled("s1")], after_id=start)
    assert [(e.kind, e.cid) for e in entries] == [(STEP_SCHEDULED, "s1"), (STEP_COMPLETED, "s1")]
    assert entries[0].entry_id == ids[0] == store.outcome_id("r1", ">s1")
    assert store.outcome_id("r1", "=s1") == CHARGE
    assert entries[1].payload == b"paid" and entries[1].meta == {"ms": 1}
    assert store.outcome_id("r1", "s1") == entries[1].entry_id
    assert store.read_since("r1", start) == entries  # what the caller got is the log


def test_an_early_outcome_of_a_step_already_scheduled_is_recorded_at_once(
    store: EventStore,
) -> None:
    make_run(store)
    assert store.acquire_lease("r1", "t", 10_000)
    store.append_fenced("r1", "t", [scheduled("s1")])
    assert store.finish_pass("r1", "t", last_id(store, "r1"))
    recorded = store.record_outcome("r1", "s1", completed("s1"), identity=CHARGE)
    assert recorded.created and recorded.wake and not recorded.parked
    assert store.outcome_id("r1", "s1") == recorded.entry_id


def test_early_outcomes_of_one_step_enter_once_and_in_the_order_they_arrived(
    store: EventStore,
) -> None:
    make_run(store)
    start = last_id(store, "r1")
    retrying = NewEvent(STEP_RETRYING, "s1", {"attempt": 1}, b"boom")
    assert store.record_outcome("r1", "s1@1", retrying, wake=False, identity=CHARGE).parked
    assert store.record_outcome("r1", "s1", completed("s1", b"first"), identity=CHARGE).parked
    assert store.record_outcome("r1", "s1", completed("s1", b"again"), identity=CHARGE).parked
    assert store.record_outcome("r1", "s2", completed("s2"), identity=CHARGE).parked

    assert store.acquire_lease("r1", "t", 10_000)
    _, entries = store.append_fenced_and_read("r1", "t", [scheduled("s1")], after_id=start)
    assert [(e.kind, e.cid, e.payload) for e in entries[1:]] == [
        (STEP_RETRYING, "s1", b"boom"),
        (STEP_COMPLETED, "s1", b"first"),  # the duplicate is dropped
    ]
    assert kinds(store, start) == [
        (STEP_SCHEDULED, "s1"),
        (STEP_RETRYING, "s1"),
        (STEP_COMPLETED, "s1"),
    ]
    # s2's outcome still waits for its own scheduling.
    _, entries = store.append_fenced_and_read(
        "r1", "t", [scheduled("s2")], after_id=last_id(store, "r1")
    )
    assert [(e.kind, e.cid) for e in entries] == [(STEP_SCHEDULED, "s2"), (STEP_COMPLETED, "s2")]


def test_record_and_begin_parks_an_early_outcome_and_takes_no_lease(store: EventStore) -> None:
    make_run(store)
    finish(store)
    outcome, start = store.record_and_begin(
        "r1", "s1", completed("s1"), "worker", 10_000, None, identity=CHARGE
    )
    assert outcome.parked and start is None
    assert store.lease_holder("r1") is None
    assert not store.wake_pending("r1")


def test_append_and_finish_ends_a_quiet_pass_and_records_what_the_workflow_waits_for(
    store: EventStore,
) -> None:
    make_run(store)  # its first pass is queued: the wake flag is set
    assert store.acquire_lease("r1", "t", 10_000)
    after = last_id(store, "r1")
    ids, entries, finished = store.append_and_finish(
        "r1", "t", [scheduled("s1"), scheduled("s2")], after_id=after,
        waitfor=WaitFor("all", ("s1", "s2"), 2),
    )  # fmt: skip
    assert finished
    assert [e.entry_id for e in entries] == ids and len(ids) == 2
    assert store.lease_holder("r1") is None  # released
    assert not store.wake_pending("r1")  # the next outcome that matters sets it again
    with pytest.raises(LeaseLost):
        store.append_fenced("r1", "t", [scheduled("s3")])
    assert not store.record_outcome("r1", "s1", completed("s1")).wake  # half of "all"
    assert store.record_outcome("r1", "s2", completed("s2")).wake


def test_append_and_finish_without_a_wait_condition_wakes_on_any_outcome(
    store: EventStore,
) -> None:
    make_run(store)
    assert store.acquire_lease("r1", "t", 10_000)
    _, _, finished = store.append_and_finish(
        "r1", "t", [scheduled("s1")], after_id=last_id(store, "r1"), waitfor=None
    )
    assert finished
    assert store.record_outcome("r1", "x9", NewEvent(SIGNAL_RECEIVED, "x9", {})).wake


def test_append_and_finish_keeps_the_pass_when_others_appended_meanwhile(
    store: EventStore,
) -> None:
    make_run(store)  # its first pass is queued: the wake flag is set
    assert store.acquire_lease("r1", "t", 10_000)
    after = last_id(store, "r1")
    signal = store.record_outcome("r1", "x1", NewEvent(SIGNAL_RECEIVED, "x1", {}), wake=True)
    ids, entries, finished = store.append_and_finish(
        "r1", "t", [scheduled("s1")], after_id=after, waitfor=WaitFor("any", ("s1",))
    )
    assert not finished
    assert [e.entry_id for e in entries] == [signal.entry_id, ids[0]]
    assert store.lease_holder("r1") == "t"  # the pass goes on: it has a signal to deliver
    assert store.wake_pending("r1")


def test_append_and_finish_keeps_the_pass_when_it_promoted_an_early_outcome(
    store: EventStore,
) -> None:
    make_run(store)  # its first pass is queued: the wake flag is set
    assert store.acquire_lease("r1", "t", 10_000)
    after = last_id(store, "r1")
    assert store.record_outcome("r1", "s1", completed("s1"), identity=CHARGE).parked
    _, entries, finished = store.append_and_finish(
        "r1", "t", [scheduled("s1")], after_id=after, waitfor=WaitFor("any", ("s1",))
    )
    assert not finished  # the workflow has its result to take: no suspending now
    assert [(e.kind, e.cid) for e in entries] == [(STEP_SCHEDULED, "s1"), (STEP_COMPLETED, "s1")]
    assert store.lease_holder("r1") == "t"


def test_append_and_finish_without_the_lease_writes_nothing(store: EventStore) -> None:
    make_run(store)
    before = store.read_since("r1", None)
    assert store.acquire_lease("r1", "holder", 10_000)
    with pytest.raises(LeaseLost):
        store.append_and_finish(
            "r1", "intruder", [scheduled("s1")], after_id=before[-1].entry_id, waitfor=None
        )
    assert store.read_since("r1", None) == before
    assert store.lease_holder("r1") == "holder"


def test_an_early_outcome_for_another_call_under_the_same_cid_is_dropped(
    store: EventStore,
) -> None:
    """A pass sent s1 for one call and died; code deployed since replays the run and schedules
    s1 for another call: the first outcome must never answer the second call."""
    make_run(store)
    start = last_id(store, "r1")
    assert store.record_outcome("r1", "s1", completed("s1", b"old"), identity=CHARGE).parked
    assert store.acquire_lease("r1", "t", 10_000)
    _, entries = store.append_fenced_and_read("r1", "t", [scheduled("s1", h="h2")], after_id=start)
    assert [(e.kind, e.cid) for e in entries] == [(STEP_SCHEDULED, "s1")]  # nothing promoted
    assert store.outcome_id("r1", "s1") is None
    # The late outcome of the old call is refused; the new call's own outcome is recorded.
    late = store.record_outcome("r1", "s1", completed("s1", b"old"), identity=CHARGE)
    assert not late.created and not late.parked and late.entry_id == ""
    mine = store.record_outcome("r1", "s1", completed("s1", b"new"), identity="charge:h2")
    assert mine.created and not mine.parked
    assert [e.payload for e in store.read_since("r1", start) if e.kind == STEP_COMPLETED] == [
        b"new"
    ]


def test_a_step_settled_in_the_batch_that_schedules_it_keeps_only_its_outcome_key(
    store: EventStore,
) -> None:
    """An inline step: scheduled and completed in one append. Its scheduled key and identity
    would serve only a step still running, so they are not kept; a late outcome for the cid
    (an execution sent by a pass that died) still meets the outcome key and is dropped."""
    make_run(store)
    start = last_id(store, "r1")
    assert store.acquire_lease("r1", "t", 10_000)
    ids, _ = store.append_fenced_and_read(
        "r1", "t", [scheduled("s1"), completed("s1"), scheduled("s2")], after_id=start
    )
    assert store.outcome_id("r1", "s1") == ids[1]
    assert store.outcome_id("r1", ">s1") is None
    assert store.outcome_id("r1", "=s1") is None
    # s2 is still running: its keys stay, for its retry timer and an outcome sent ahead.
    assert store.outcome_id("r1", ">s2") == ids[2]
    assert store.outcome_id("r1", "=s2") == CHARGE

    late = store.record_outcome("r1", "s1", completed("s1", b"twice"), identity=CHARGE)
    assert late.entry_id == ids[1] and not late.created
    assert kinds(store, start) == [
        (STEP_SCHEDULED, "s1"),
        (STEP_COMPLETED, "s1"),
        (STEP_SCHEDULED, "s2"),
    ]


def test_an_outcome_already_recorded_keeps_the_keys_of_a_scheduling_it_did_not_settle(
    store: EventStore,
) -> None:
    """Only an outcome appended in the batch settles a step there: one that was recorded
    before (so not appended again) leaves the scheduling's keys as they were written."""
    make_run(store)
    finish(store)
    start = last_id(store, "r1")
    assert store.acquire_lease("r1", "t", 10_000)
    first, _ = store.append_fenced_and_read("r1", "t", [scheduled("s1")], after_id=start)
    recorded = store.record_outcome("r1", "s1", completed("s1"), wake=False)
    ids, _ = store.append_fenced_and_read(
        "r1", "t", [scheduled("s1"), completed("s1")], after_id=recorded.entry_id
    )
    assert ids == [first[0], recorded.entry_id]  # both already in: nothing appended
    assert store.outcome_id("r1", ">s1") == first[0]
    assert store.outcome_id("r1", "=s1") == CHARGE


def test_a_batch_that_settles_its_steps_appended_again_adds_nothing(store: EventStore) -> None:
    """A pass whose reply was lost sends its batch again: inline steps (each scheduled and
    completed in the batch) are found under their outcome keys, their scheduling right before."""
    make_run(store)
    start = last_id(store, "r1")
    assert store.acquire_lease("r1", "t", 10_000)
    batch = [
        scheduled("s1"),
        completed("s1"),
        scheduled("s2", "h2"),
        completed("s2"),
        scheduled("s3"),
    ]
    ids, _ = store.append_fenced_and_read("r1", "t", batch, after_id=start)
    again, new = store.append_fenced_and_read("r1", "t", batch, after_id=ids[-1])
    assert again == ids and new == []
    assert kinds(store, start) == [
        (STEP_SCHEDULED, "s1"),
        (STEP_COMPLETED, "s1"),
        (STEP_SCHEDULED, "s2"),
        (STEP_COMPLETED, "s2"),
        (STEP_SCHEDULED, "s3"),
    ]
