"""The event store contract, part 5: recording an outcome a worker has already continued with.

A worker that ran a step and holds the run's suspended workflow continues it with the outcome
first, then records the outcome at an entry id it chose, with the steps the continuation sent,
and finishes the pass: one round trip (``record_ahead``). Only when the run is exactly as the
worker saw it; otherwise nothing is written. Runs on every store kind.
"""

from __future__ import annotations

from typing import Any

import pytest

from durable_celery.replay.events import STEP_COMPLETED, STEP_SCHEDULED, Event, NewEvent
from durable_celery.store import EventStore
from durable_celery.store.base import WaitFor
from durable_celery.store.entries import following_ids

from .support import finish, last_id, make_run

pytestmark = pytest.mark.timeout(60)

CHARGE = "charge:h1"


def scheduled(cid: str) -> NewEvent:
    return NewEvent(STEP_SCHEDULED, cid, {"name": "charge", "h": "h1"}, b"input-" + cid.encode())


def waiting_on_s1(store: EventStore) -> str:
    """A run whose last pass scheduled s1 and finished, waiting for s1: its last entry id."""
    make_run(store)
    assert store.acquire_lease("r1", "t", 10_000)
    store.append_fenced("r1", "t", [scheduled("s1")])
    assert store.finish_pass("r1", "t", last_id(store, "r1"), WaitFor("all", ("s1",)))
    return last_id(store, "r1")


def ahead_ids(after: str, count: int) -> list[str]:
    ms = int(after.split("-")[0])
    first = f"{ms + 5}-0"
    return [first, *following_ids(first, count - 1)]


def outcome(entry_id: str, cid: str = "s1", value: bytes = b"paid") -> Event:
    return Event(entry_id, STEP_COMPLETED, cid, {"name": "charge", "attempt": 1}, value)


def as_entry(entry_id: str, event: NewEvent) -> Event:
    return Event(entry_id, event.kind, event.cid, event.meta, event.payload)


def s1_then_s2(store: EventStore, after: str, ids: list[str], identity: str = CHARGE) -> Any:
    """s1's outcome gone ahead with, and s2 sent: record both and finish, waiting for s2."""
    return store.record_ahead(
        "r1",
        "s1",
        outcome(ids[0]),
        "t2",
        10_000,
        after,
        identity=identity,
        scheduled=[as_entry(ids[1], scheduled("s2"))],
        waitfor=WaitFor("all", ("s2",)),
    )


def test_finish_mode_records_outcome_and_new_steps_at_the_chosen_ids_and_ends_the_pass(
    store: EventStore,
) -> None:
    after = waiting_on_s1(store)
    first, second = ahead_ids(after, 2)
    result = s1_then_s2(store, after, [first, second])
    assert result.status == "finished" and result.promoted == []
    new = store.read_since("r1", after)
    assert new == [outcome(first), as_entry(second, scheduled("s2"))]  # as the caller built them
    assert store.outcome_id("r1", "s1") == first
    assert store.outcome_id("r1", ">s2") == second and store.outcome_id("r1", "=s2") == CHARGE
    assert store.lease_holder("r1") is None and not store.wake_pending("r1")
    assert store.get_run("r1").updated_ms == int(second.split("-")[0])  # type: ignore[union-attr]
    # It recorded what the workflow now waits for: s2's outcome wakes the run, another does not.
    assert not store.record_outcome("r1", "x9", NewEvent(STEP_COMPLETED, "x9", {}, b"")).wake
    assert store.record_outcome("r1", "s2", NewEvent(STEP_COMPLETED, "s2", {}, b"")).wake


def test_begin_mode_records_the_outcome_and_takes_the_lease(store: EventStore) -> None:
    after = waiting_on_s1(store)
    (first,) = ahead_ids(after, 1)
    result = store.record_ahead("r1", "s1", outcome(first), "t2", 10_000, after)
    assert result.status == "begun"
    assert store.read_since("r1", after) == [outcome(first)]
    assert store.lease_holder("r1") == "t2" and store.wake_pending("r1")
    ids = store.append_fenced("r1", "t2", [scheduled("s2")])  # the pass goes on with the lease
    assert ids[0] > first
    assert store.finish_pass("r1", "t2", ids[0])


@pytest.mark.parametrize(
    "change",
    ["recorded", "moved", "busy", "queued", "call", "status"],
)
def test_refused_unless_the_run_is_as_the_caller_saw_it_and_nothing_is_written(
    store: EventStore, change: str
) -> None:
    after = waiting_on_s1(store)
    identity = CHARGE
    if change == "recorded":  # a redelivery of the step recorded it meanwhile
        store.record_outcome("r1", "s1", NewEvent(STEP_COMPLETED, "s1", {}, b"first"), wake=False)
    elif change == "moved":  # a signal, an event, a cancel request...
        store.record_outcome("r1", "x1", NewEvent(STEP_COMPLETED, "x1", {}, b""), wake=False)
    elif change == "busy":
        assert store.acquire_lease("r1", "other", 10_000)
    elif change == "queued":
        store.request_wake("r1")
    elif change == "call":
        identity = "refund:h9"
    elif change == "status":
        store.set_status("r1", "blocked")
    before = store.read_since("r1", None)
    lease, wake = store.lease_holder("r1"), store.wake_pending("r1")
    ids = ahead_ids(last_id(store, "r1") if change != "moved" else after, 2)
    result = s1_then_s2(store, after, ids, identity)
    expected = {"queued": "busy"}.get(change, change)
    assert (result.status, result.reason) == ("refused", expected)
    assert store.read_since("r1", None) == before
    assert (store.lease_holder("r1"), store.wake_pending("r1")) == (lease, wake)
    assert store.outcome_id("r1", ">s2") is None


def test_an_unknown_run_is_refused(store: EventStore) -> None:
    result = store.record_ahead("nope", "s1", outcome("9-0"), "t", 10_000, "1-0")
    assert (result.status, result.reason) == ("refused", "missing")


def test_outcomes_of_the_new_steps_that_came_first_are_promoted_and_the_lease_kept(
    store: EventStore,
) -> None:
    after = waiting_on_s1(store)
    # s2 was sent before this script ran, and another worker already ran it.
    parked = store.record_outcome(
        "r1", "s2", NewEvent(STEP_COMPLETED, "s2", {}, b"fast"), identity=CHARGE
    )
    assert parked.parked
    first, second = ahead_ids(after, 2)
    result = s1_then_s2(store, after, [first, second])
    assert result.status == "continued"
    assert [(e.kind, e.cid, e.payload) for e in result.promoted] == [
        (STEP_COMPLETED, "s2", b"fast")
    ]
    assert store.read_since("r1", second) == result.promoted
    assert store.lease_holder("r1") == "t2" and store.wake_pending("r1")


def test_chosen_ids_must_rise_above_the_last_entry_in_order(store: EventStore) -> None:
    after = waiting_on_s1(store)
    with pytest.raises(ValueError, match="must rise"):
        store.record_ahead("r1", "s1", outcome(after), "t2", 10_000, after)
    first, second = ahead_ids(after, 2)
    with pytest.raises(ValueError, match="must rise"):
        store.record_ahead(
            "r1", "s1", outcome(second), "t2", 10_000, after,
            scheduled=[as_entry(first, scheduled("s2"))],
        )  # fmt: skip
    assert store.read_since("r1", after) == []
    finish(store, token="t3")
