"""Dispatched steps sent before their scheduling is recorded (their input in the message).

The pass sends small steps first and records them in the append that finishes it. These tests
drive the orderings that makes possible: a step that finishes before that append lands, a pass
that dies between sending and appending, and inputs too large to travel in a message.
"""

from __future__ import annotations

import secrets
import time
from typing import Any

import pytest

from durable_celery import Durable, gather
from durable_celery.replay.events import STEP_COMPLETED, STEP_SCHEDULED, Event
from durable_celery.store import MemoryEventStore
from durable_celery.store.base import lease_lost
from durable_celery.testing.local import LocalEnvironment

from .support import EagerWorker, gather_of_squares


def completed_per_cid(history: list[Event]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for event in history:
        if event.kind == STEP_COMPLETED:
            counts[event.cid] = counts.get(event.cid, 0) + 1
    return counts


def scheduled_before_completed(history: list[Event]) -> bool:
    seen: set[str] = set()
    for event in history:
        if event.kind == STEP_SCHEDULED:
            seen.add(event.cid)
        elif event.kind == STEP_COMPLETED and event.cid not in seen:
            return False
    return True


def store_that_dies_once_after_sending() -> MemoryEventStore:
    """A memory store whose first ``append_and_finish`` dies (SystemExit, not caught by the
    pass): the pass has sent its steps, and never records them."""
    store = MemoryEventStore()
    append_and_finish = store.append_and_finish
    deaths = [1]

    def dies_once(*args: Any, **kwargs: Any) -> Any:
        if deaths:
            deaths.pop()
            raise SystemExit("the worker died between sending steps and recording them")
        return append_and_finish(*args, **kwargs)

    store.append_and_finish = dies_once  # type: ignore[method-assign]
    return store


def fan_out(durable: Durable) -> Any:
    @durable.step
    def square(x: int) -> int:
        return x * x

    @durable.workflow
    def squares(n: int) -> int:
        first = square(1)
        return first + sum(gather(*(square.defer(i) for i in range(n))))

    return squares


def test_a_step_that_finishes_before_its_scheduling_is_recorded_waits_for_it(
    durable: Durable,
) -> None:
    squares = fan_out(durable)
    dispatcher = EagerWorker()
    env = LocalEnvironment(durable, step_execution="dispatch", dispatcher=dispatcher)
    dispatcher.env = env
    handle = squares.start(4)
    env.run_until_idle()

    assert handle.result(timeout=0) == 1 + 0 + 1 + 4 + 9
    history = durable.history(handle.run_id)
    assert completed_per_cid(history) == {"s1": 1, "s2": 1, "s3": 1, "s4": 1, "s5": 1}
    assert scheduled_before_completed(history)
    # Every outcome was parked, then taken by the append that recorded its step: the pass went
    # on with them, so the run needed a single pass (queued by start()).
    assert env.passes == 1 and dispatcher.wakes == 1


def test_steps_are_sent_with_their_input_and_without_an_entry_id(durable: Durable) -> None:
    squares = fan_out(durable)
    env = LocalEnvironment(durable, step_execution="dispatch")
    handle = squares.start(2)
    env.step_once()
    (item,) = env.dispatcher.queue
    _, name, run_id, cid, entry_id, attempt, payload, identity = item
    assert name.endswith(".square")
    scheduled = durable.history(handle.run_id)[-1]
    assert identity == f"{name}:{scheduled.meta['h']}"
    assert (run_id, cid, entry_id, attempt) == (handle.run_id, "s1", "", 1)
    assert payload == durable.history(handle.run_id)[-1].payload  # as recorded in the log
    assert env.runtime.store.lease_holder(handle.run_id) is None  # the append finished the pass
    assert not env.runtime.store.wake_pending(handle.run_id)
    assert env.result(handle) == 2


def test_inputs_over_the_limit_are_recorded_first_and_read_by_the_step(durable: Durable) -> None:
    @durable.step
    def size(blob: str) -> int:
        return len(blob)

    @durable.workflow
    def measure(blob: str) -> int:
        return size(blob)

    env = LocalEnvironment(durable, step_execution="dispatch", message_input_limit=1000)
    blob = secrets.token_hex(2500)  # 5000 characters that compress to about half
    handle = measure.start(blob)
    env.step_once()
    (item,) = env.dispatcher.queue
    scheduled = durable.history(handle.run_id)[-1]
    assert scheduled.kind == STEP_SCHEDULED
    assert item[4] == scheduled.entry_id and item[6] is None  # ids only: the step reads the log
    assert env.result(handle) == 5000


def test_a_pass_that_dies_after_sending_is_replayed_and_each_outcome_recorded_once(
    durable: Durable,
) -> None:
    runs: list[int] = []
    squares = gather_of_squares(durable, runs)
    store = store_that_dies_once_after_sending()
    env = LocalEnvironment(durable, store=store, step_execution="dispatch", lease_timeout=0.05)
    handle = squares.start(3)
    with pytest.raises(SystemExit):
        env.step_once()
    assert len(env.dispatcher.queue) == 3  # sent, not recorded
    env.run_until_idle()  # the steps run; their outcomes wait for scheduling that never came
    assert sorted(runs) == [0, 1, 2]
    assert completed_per_cid(durable.history(handle.run_id)) == {}
    assert store.wake_pending(handle.run_id)  # the dead pass's wake is still owed

    time.sleep(0.1)  # past the lease: the sweep sees a lost wake and drives the run again
    assert env.runtime.sweeper.sweep() == [handle.run_id]
    assert env.result(handle) == [0, 1, 4]
    history = durable.history(handle.run_id)
    assert completed_per_cid(history) == {"s1": 1, "s2": 1, "s3": 1}
    assert scheduled_before_completed(history)
    assert sorted(runs) == [0, 0, 1, 1, 2, 2]  # sent again by the replay: at least once


def test_a_lease_lost_inside_a_workflow_stops_the_pass_even_when_the_workflow_catches_it(
    durable: Durable,
) -> None:
    """The host's LeaseLost is a fault, not an error the workflow code can handle: a workflow
    with a bare ``except Exception`` must not record a result on a lease it lost."""

    @durable.step
    def square(x: int) -> int:
        return x * x

    @durable.workflow
    def stubborn(x: int) -> int | str:
        try:
            return square(x)
        except Exception:
            return "swallowed"

    store = MemoryEventStore()
    append_and_finish = store.append_and_finish
    losses = [1]

    def loses_once(run_id: str, *args: Any, **kwargs: Any) -> Any:
        if losses:
            losses.pop()
            raise lease_lost(run_id)
        return append_and_finish(run_id, *args, **kwargs)

    store.append_and_finish = loses_once  # type: ignore[method-assign]
    env = LocalEnvironment(durable, store=store, step_execution="dispatch", lease_timeout=0.05)
    handle = stubborn.start(3)
    env.step_once()  # the pass meets LeaseLost: it stops, and writes nothing
    assert handle.status() == "running"
    assert [e.kind for e in durable.history(handle.run_id)] == ["run_started"]
    env.run_until_idle()
    time.sleep(0.1)  # past the lease: the sweep drives the run again
    assert env.runtime.sweeper.sweep() == [handle.run_id]
    assert env.result(handle) == 9


def test_an_orphan_outcome_never_answers_another_call_after_a_deploy(durable: Durable) -> None:
    """A pass sends s1 = charge(5) and dies before recording it; the code deployed before the
    replay calls refund(5) first. The orphan charge ran (at least once), but its outcome must
    not become refund's: the log shows refund's own."""
    deployed = {"new": False}

    @durable.step
    def charge(x: int) -> str:
        return f"charged {x}"

    @durable.step
    def refund(x: int) -> str:
        return f"refunded {x}"

    @durable.workflow(name="pay")
    def pay(x: int) -> str:
        return refund(x) if deployed["new"] else charge(x)

    store = store_that_dies_once_after_sending()
    env = LocalEnvironment(durable, store=store, step_execution="dispatch", lease_timeout=0.05)
    handle = pay.start(5)
    with pytest.raises(SystemExit):
        env.step_once()
    env.run_until_idle()  # the orphan charge runs; its outcome waits for a scheduling
    deployed["new"] = True
    time.sleep(0.1)
    assert env.runtime.sweeper.sweep() == [handle.run_id]
    assert env.result(handle) == "refunded 5"
    history = durable.history(handle.run_id)
    assert [(e.kind, e.cid) for e in history if e.kind.startswith("step_")] == [
        (STEP_SCHEDULED, "s1"),
        (STEP_COMPLETED, "s1"),
    ]
    scheduled = next(e for e in history if e.kind == STEP_SCHEDULED)
    assert str(scheduled.meta["name"]).endswith("refund")


def test_a_pass_that_finished_in_its_append_takes_in_nothing_newer(durable: Durable) -> None:
    """Once its append has finished the pass, the lease is free: another pass may take the run,
    record and read on (moving this process's event cache) before this one has parked. This
    pass must suspend on what its append returned; carrying on with the newer entries would
    make it issue work without the lease, and it once recorded the LeaseLost it then met as
    the run's failure."""

    @durable.step
    def bump(x: int) -> int:
        return x + 1

    @durable.workflow
    def chain(n: int) -> int:
        x = 0
        for _ in range(n):
            x = bump(x)
        return x

    store = MemoryEventStore()
    env = LocalEnvironment(durable, store=store, step_execution="dispatch")
    append_and_finish, acquire_lease = store.append_and_finish, store.acquire_lease

    def overtaken(run_id: str, *args: Any, **kwargs: Any) -> Any:
        ids, entries, finished = append_and_finish(run_id, *args, **kwargs)
        if finished and not store.outcome_id(run_id, "s1"):  # the first pass only
            env.step_once()  # s1 runs and is recorded; a pass takes the run and reads on,
            assert store.acquire_lease(run_id, "another pass", 10_000)
            env.runtime.events.refresh(run_id)  # in this process
        return ids, entries, finished

    def another_pass_ends_soon(run_id: str, token: str, ttl_ms: int) -> bool:
        got = acquire_lease(run_id, token, ttl_ms)
        if not got:
            store.release_lease(run_id, "another pass")
        return got

    store.append_and_finish = overtaken  # type: ignore[method-assign]
    store.acquire_lease = another_pass_ends_soon  # type: ignore[method-assign]
    handle = chain.start(2)
    env.step_once()  # the first pass: sends s1, finishes in its append, is overtaken
    store.release_lease(handle.run_id, "another pass")
    assert env.result(handle) == 2
    history = durable.history(handle.run_id)
    assert [e.kind for e in history].count("run_failed") == 0
    assert completed_per_cid(history) == {"s1": 1, "s2": 1}
