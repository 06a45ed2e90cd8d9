"""The event store contract, part 2: what an orchestrator pass relies on (lease, fenced
appends, wake flag, outbox, finishing) and durable timers. Runs on every store kind."""

from __future__ import annotations

import time

import pytest

from durable_celery.errors import LeaseLost, RunNotFound
from durable_celery.replay.events import MARKER, STEP_COMPLETED, STEP_SCHEDULED, NewEvent
from durable_celery.store import EventStore

from .support import finish, last_id, make_run, wait_until

pytestmark = pytest.mark.timeout(60)


# -- fenced appends and the lease -----------------------------------------------------------------
def test_append_fenced_requires_the_lease_and_writes_nothing_without_it(store: EventStore) -> None:
    make_run(store)
    before = store.read_since("r1", None)
    with pytest.raises(LeaseLost):
        store.append_fenced("r1", "t", [NewEvent(MARKER)], status="failed", outbox=["x"])
    assert store.acquire_lease("r1", "holder", 10_000)
    with pytest.raises(LeaseLost):
        store.append_fenced("r1", "intruder", [NewEvent(STEP_COMPLETED, "s1")], outbox=["x"])
    assert store.read_since("r1", None) == before
    assert store.outcome_id("r1", "s1") is None
    assert store.pending_outbox("r1") == []
    record = store.get_run("r1")
    assert record is not None and record.status == "running"


def test_append_fenced_to_an_unknown_run_raises_run_not_found(store: EventStore) -> None:
    assert store.acquire_lease("ghost", "t", 10_000)
    with pytest.raises(RunNotFound):
        store.append_fenced("ghost", "t", [NewEvent(MARKER)])
    assert store.read_since("ghost", None) == []


def test_append_fenced_sets_status_and_outbox(store: EventStore) -> None:
    make_run(store)
    assert store.acquire_lease("r1", "t", 10_000)
    ids = store.append_fenced(
        "r1", "t", [NewEvent(STEP_SCHEDULED, "s1"), NewEvent(STEP_SCHEDULED, "s2")],
        status="running", outbox=["s2", "s1"],
    )  # fmt: skip
    assert len(ids) == 2 and ids[0] != ids[1]
    assert store.pending_outbox("r1") == ["s1", "s2"]
    assert store.append_fenced("r1", "t", [], status="completed") == []
    record = store.get_run("r1")
    assert record is not None and record.status == "completed"


def test_a_lease_is_exclusive_renewable_and_released_only_by_its_holder(
    store: EventStore,
) -> None:
    make_run(store)
    assert store.lease_holder("r1") is None
    assert store.acquire_lease("r1", "a", 10_000)
    assert not store.acquire_lease("r1", "b", 10_000)
    assert store.acquire_lease("r1", "a", 20_000)  # re-entrant: renews
    assert 10_000 < store.lease_ttl_ms("r1") <= 20_000
    store.release_lease("r1", "b")
    assert store.lease_holder("r1") == "a"
    store.release_lease("r1", "a")
    assert store.lease_ttl_ms("r1") == 0
    assert store.acquire_lease("r1", "b", 10_000)


def test_an_expired_lease_can_be_taken_and_fences_out_its_old_holder(store: EventStore) -> None:
    make_run(store)
    assert store.acquire_lease("r1", "old", 50)
    # Gone, not "0 ms left": Redis reports 0 for a key with under a millisecond to live.
    wait_until(lambda: store.lease_holder("r1") is None)
    assert store.lease_ttl_ms("r1") == 0
    assert store.acquire_lease("r1", "new", 10_000)
    with pytest.raises(LeaseLost):
        store.append_fenced("r1", "old", [NewEvent(MARKER)])
    with pytest.raises(LeaseLost):
        store.finish_pass("r1", "old", last_id(store, "r1"))
    assert store.lease_holder("r1") == "new"


def test_a_fenced_append_renews_the_lease_for_its_original_ttl(store: EventStore) -> None:
    make_run(store)
    assert store.acquire_lease("r1", "t", 3_000)
    wait_until(lambda: store.lease_ttl_ms("r1") < 2_500)
    store.append_fenced("r1", "t", [])
    assert store.lease_ttl_ms("r1") > 2_500


def test_lease_arguments_are_checked(store: EventStore) -> None:
    with pytest.raises(ValueError, match="token"):
        store.acquire_lease("r1", "", 1_000)
    with pytest.raises(ValueError, match="ttl"):
        store.acquire_lease("r1", "t", 0)


# -- wake flag, outbox, finishing a pass ----------------------------------------------------------
def test_the_wake_flag_coalesces_wakes_until_a_pass_finishes(store: EventStore) -> None:
    make_run(store)
    finish(store)
    assert not store.wake_pending("r1")
    quiet = store.record_outcome("r1", "r0", NewEvent(STEP_COMPLETED, "r0"), wake=False)
    assert quiet.created and not quiet.wake and not store.wake_pending("r1")
    first = store.record_outcome("r1", "s1", NewEvent(STEP_COMPLETED, "s1"))
    second = store.record_outcome("r1", "s2", NewEvent(STEP_COMPLETED, "s2"))
    assert first.wake and not second.wake
    assert not store.request_wake("r1")
    duplicate = store.record_outcome("r1", "s1", NewEvent(STEP_COMPLETED, "s1"))
    assert not duplicate.wake
    finish(store)
    assert store.record_outcome("r1", "s3", NewEvent(STEP_COMPLETED, "s3")).wake
    finish(store)
    assert store.request_wake("r1")
    assert not store.request_wake("r1")


def test_finish_pass_refuses_when_the_log_grew_and_keeps_flag_outbox_and_lease(
    store: EventStore,
) -> None:
    make_run(store)
    assert store.acquire_lease("r1", "t", 10_000)
    (scheduled,) = store.append_fenced("r1", "t", [NewEvent(STEP_SCHEDULED, "s1")], outbox=["s1"])
    late = store.record_outcome("r1", "s1", NewEvent(STEP_COMPLETED, "s1"))
    assert not late.wake  # the running pass owns the flag
    assert not store.finish_pass("r1", "t", scheduled)
    assert store.wake_pending("r1")
    assert store.pending_outbox("r1") == ["s1"]
    assert store.lease_holder("r1") == "t"
    assert store.finish_pass("r1", "t", late.entry_id)
    assert not store.wake_pending("r1")
    assert store.pending_outbox("r1") == []
    assert store.lease_holder("r1") is None


def test_finish_pass_without_the_lease_raises_and_clears_nothing(store: EventStore) -> None:
    make_run(store)
    assert store.acquire_lease("r1", "t", 10_000)
    store.append_fenced("r1", "t", [], outbox=["s1"])
    with pytest.raises(LeaseLost):
        store.finish_pass("r1", "intruder", last_id(store, "r1"))
    store.release_lease("r1", "t")
    with pytest.raises(LeaseLost):
        store.finish_pass("r1", "t", last_id(store, "r1"))
    assert store.wake_pending("r1")
    assert store.pending_outbox("r1") == ["s1"]


def test_the_outbox_accumulates_across_appends_until_finish_pass(store: EventStore) -> None:
    make_run(store)
    assert store.acquire_lease("r1", "t", 10_000)
    store.append_fenced("r1", "t", [NewEvent(STEP_SCHEDULED, "a")], outbox=["a"])
    store.append_fenced("r1", "t", [NewEvent(STEP_SCHEDULED, "b")], outbox=["b", "a"])
    store.release_lease("r1", "t")  # a pass that dies keeps its outbox for the next one
    assert store.pending_outbox("r1") == ["a", "b"]
    finish(store, token="next")
    assert store.pending_outbox("r1") == []


# -- timers ---------------------------------------------------------------------------------------
def test_a_timer_is_due_after_its_delay_on_the_store_clock(store: EventStore) -> None:
    make_run(store)
    now = store.now_ms()
    assert abs(now - time.time() * 1000) < 60_000
    deadline = store.add_timer("retry", "r1", "s1", 60_000, {"attempt": 2})
    assert now + 60_000 <= deadline <= store.now_ms() + 60_000
    assert store.claim_due_timers(10_000) == []
    store.add_timer("timer", "r1", "t1", 0, {})
    (due,) = store.claim_due_timers(10_000)
    assert (due.kind, due.run_id, due.cid, due.data) == ("timer", "r1", "t1", {})


def test_a_claimed_timer_is_hidden_until_its_claim_expires(store: EventStore) -> None:
    store.add_timer("retry", "r1", "s1", 0, {"attempt": 2, "step": "charge"})
    (claimed,) = store.claim_due_timers(claim_ms=100)
    assert claimed.data == {"attempt": 2, "step": "charge"}
    assert store.claim_due_timers(claim_ms=100) == []
    wait_until(lambda: bool(store.claim_due_timers(claim_ms=10_000)))
    assert store.claim_due_timers(claim_ms=10_000) == []
    store.remove_timer(claimed.member)
    store.add_timer("retry", "r2", "s1", 0, {})
    assert [t.run_id for t in store.claim_due_timers(claim_ms=0)] == ["r2"]


def test_timers_are_claimed_in_deadline_order_up_to_the_limit(store: EventStore) -> None:
    store.add_timer("timer", "r1", "b-first", 0, {})
    time.sleep(0.005)
    store.add_timer("timer", "r1", "a-second", 0, {})
    store.add_timer("timer", "r1", "c-third", -60_000, {})  # a negative delay counts as 0
    assert [t.cid for t in store.claim_due_timers(10_000, limit=2)] == ["b-first", "a-second"]
    assert [t.cid for t in store.claim_due_timers(10_000, limit=2)] == ["c-third"]


def test_adding_the_same_timer_again_keeps_its_first_deadline(store: EventStore) -> None:
    first = store.add_timer("retry", "r1", "s1", 50_000, {"attempt": 1})
    time.sleep(0.005)
    assert store.add_timer("retry", "r1", "s1", 90_000, {"attempt": 1}) == first
    assert store.add_timer("retry", "r1", "s1", 90_000, {"attempt": 2}) > first


def test_begin_pass_takes_the_lease_and_returns_the_outbox_and_the_delta_at_once(store) -> None:
    from durable_celery.replay.events import NewEvent

    store.create_run("bp1", "wf", NewEvent("run_started", "", {"workflow": "wf"}, b"x"), {})
    start = store.begin_pass("bp1", "tok", 5000, None)
    assert (
        start.acquired and start.outbox == [] and [e.kind for e in start.entries] == ["run_started"]
    )
    first = start.entries[-1].entry_id
    store.append_fenced(
        "bp1", "tok", [NewEvent("step_scheduled", "s1", {"name": "a"})], outbox=["s1"]
    )
    again = store.begin_pass("bp1", "tok", 5000, first)  # re-entrant for the same token
    assert again.acquired and again.outbox == ["s1"]
    assert [(e.kind, e.cid) for e in again.entries] == [("step_scheduled", "s1")]
    other = store.begin_pass("bp1", "other", 5000, None)
    assert not other.acquired and 0 < other.lease_ms <= 5000 and other.entries == []


def test_read_step_input_returns_the_recorded_outcome_and_the_scheduled_entry(store) -> None:
    from durable_celery.replay.events import NewEvent

    store.create_run("si1", "wf", NewEvent("run_started", "", {"workflow": "wf"}, b"x"), {})
    assert store.acquire_lease("si1", "tok", 5000)
    [sid] = store.append_fenced("si1", "tok", [NewEvent("step_scheduled", "s1", {"n": 1}, b"a")])
    assert store.read_step_input("si1", "s1", sid) == (None, store.read_entry("si1", sid))
    done = store.record_outcome("si1", "s1", NewEvent("step_completed", "s1", {}, b"r"))
    outcome, entry = store.read_step_input("si1", "s1", sid)
    assert outcome == done.entry_id and entry is not None and entry.payload == b"a"


def test_a_recorded_wait_condition_decides_which_outcomes_wake_the_run(store) -> None:
    from durable_celery.replay.events import NewEvent
    from durable_celery.store.base import WaitFor

    store.create_run("wf1", "wf", NewEvent("run_started", "", {"workflow": "wf"}, b"x"), {})
    assert store.acquire_lease("wf1", "tok", 5000)
    last = store.read_last("wf1")[-1].entry_id
    # The workflow waits for all of s1, s2, s3 (a gather): only the last of them wakes it.
    assert store.finish_pass("wf1", "tok", last, WaitFor("all", ("s1", "s2", "s3"), 3))
    assert not store.record_outcome("wf1", "s2", NewEvent("step_completed", "s2")).wake
    assert not store.record_outcome("wf1", "s9", NewEvent("step_completed", "s9")).wake  # unrelated
    assert not store.record_outcome("wf1", "s1", NewEvent("step_completed", "s1")).wake
    assert store.record_outcome("wf1", "s3", NewEvent("step_completed", "s3")).wake
    # A pass that finishes with no condition: any outcome wakes again.
    assert store.acquire_lease("wf1", "tok", 5000)
    last = store.read_last("wf1")[-1].entry_id
    assert store.finish_pass("wf1", "tok", last, WaitFor("any", ("t1", "s4")))
    assert not store.record_outcome("wf1", "s5", NewEvent("step_completed", "s5")).wake
    cancel = NewEvent("run_cancel_requested", "", {})
    assert store.record_outcome("wf1", "cancel", cancel, force=True).wake  # control always wakes
    assert store.acquire_lease("wf1", "tok", 5000)
    last = store.read_last("wf1")[-1].entry_id
    assert store.finish_pass("wf1", "tok", last)
    assert store.record_outcome("wf1", "s6", NewEvent("step_completed", "s6")).wake


def test_record_and_begin_takes_the_lease_only_when_the_outcome_wakes_the_run(store) -> None:
    from durable_celery.replay.events import NewEvent
    from durable_celery.store.base import WaitFor

    store.create_run("rb1", "wf", NewEvent("run_started", "", {"workflow": "wf"}, b"x"), {})
    assert store.acquire_lease("rb1", "p1", 5000)
    first = store.read_last("rb1")[-1].entry_id
    store.append_fenced(
        "rb1", "p1", [NewEvent("step_scheduled", "s1"), NewEvent("step_scheduled", "s2")]
    )
    last = store.read_last("rb1")[-1].entry_id
    assert store.finish_pass("rb1", "p1", last, WaitFor("all", ("s1", "s2"), 2))

    done, start = store.record_and_begin(
        "rb1", "s1", NewEvent("step_completed", "s1"), "w1", 5000, last
    )
    assert done.created and not done.wake and start is None  # the gather still needs s2
    assert store.lease_ttl_ms("rb1") == 0

    done, start = store.record_and_begin(
        "rb1", "s2", NewEvent("step_completed", "s2"), "w2", 5000, last
    )
    assert done.created and done.wake and start is not None and start.acquired
    assert [(e.kind, e.cid) for e in start.entries] == [
        ("step_completed", "s1"),
        ("step_completed", "s2"),
    ]
    assert store.lease_holder("rb1") == "w2"
    again, start = store.record_and_begin(
        "rb1", "s2", NewEvent("step_completed", "s2"), "w3", 5000, first
    )
    assert not again.created and again.entry_id == done.entry_id and start is None  # append-once


def test_an_outcome_for_a_finished_run_is_kept_but_does_not_wake_it(store) -> None:
    from durable_celery.replay.events import NewEvent

    store.create_run("fin1", "wf", NewEvent("run_started", "", {"workflow": "wf"}, b"x"), {})
    assert store.acquire_lease("fin1", "tok", 5000)
    store.append_fenced(
        "fin1", "tok", [NewEvent("run_completed", "", {}, b"r")], status="completed"
    )
    last = store.read_last("fin1")[-1].entry_id
    assert store.finish_pass("fin1", "tok", last)
    late = store.record_outcome("fin1", "s2", NewEvent("step_completed", "s2"))
    assert late.created and not late.wake  # a race's loser: recorded, no pass
    done, start = store.record_and_begin(
        "fin1", "s3", NewEvent("step_completed", "s3"), "w", 5000, last
    )
    assert done.created and not done.wake and start is None


# -- redelivery of lost step messages -------------------------------------------------------------
def test_claim_redelivery_is_granted_once_per_idle_period_of_a_running_run(
    store: EventStore,
) -> None:
    make_run(store)
    assert not store.claim_redelivery("r1", 200)  # just created: not idle
    time.sleep(0.25)
    assert store.claim_redelivery("r1", 200)
    assert not store.claim_redelivery("r1", 200)  # claimed: the next one after another period
    time.sleep(0.25)
    store.record_outcome("r1", "s1", NewEvent(STEP_COMPLETED, "s1"), wake=False)
    assert not store.claim_redelivery("r1", 200)  # something was recorded: not idle any more
    record = store.get_run("r1")
    assert record is not None and "redelivered_ms" not in record.extra


def test_claim_redelivery_is_refused_for_runs_not_running(store: EventStore) -> None:
    make_run(store)
    store.set_status("r1", "blocked")
    time.sleep(0.06)
    assert not store.claim_redelivery("r1", 50)
    assert not store.claim_redelivery("ghost", 50)
