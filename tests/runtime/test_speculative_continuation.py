"""Speculative continuation: a worker that ran a dispatched step and holds the run's suspended
workflow continues it with the outcome first, then records the outcome, the next steps'
scheduling and the pass's end in one round trip (``Orchestrator.run_ahead``).

These tests count what the store was asked, and drive the cases where the run is not as the
worker saw it: nothing may then be recorded ahead, and the run must end the same.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from durable_celery import Durable, now
from durable_celery.replay.events import STEP_COMPLETED, STEP_SCHEDULED, Event
from durable_celery.store import MemoryEventStore
from durable_celery.testing import WorkflowTestEnvironment
from durable_celery.testing.local import LocalEnvironment

from .support import EagerWorker


class SpiedStore(MemoryEventStore):
    """Counts ``record_ahead`` results by (mode, status, reason) and ``record_and_begin``s."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.ahead: Counter[tuple[str, str, str]] = Counter()
        self.record_and_begins = 0

    def record_ahead(self, *args: Any, **kwargs: Any) -> Any:
        result = super().record_ahead(*args, **kwargs)
        mode = "finish" if kwargs.get("scheduled") else "begin"
        self.ahead[(mode, result.status, result.reason)] += 1
        return result

    def record_and_begin(self, *args: Any, **kwargs: Any) -> Any:
        self.record_and_begins += 1
        return super().record_and_begin(*args, **kwargs)


def counting(durable: Durable, runs: list[int]) -> Any:
    @durable.step
    def inc(x: int) -> int:
        runs.append(x)
        return x + 1

    @durable.workflow
    def count_to(n: int) -> int:
        value = 0
        for _ in range(n):
            value = inc(value)
        return value

    return count_to


def one_hop_dispatch(durable: Durable, store: SpiedStore) -> LocalEnvironment:
    """Steps dispatched, and the worker that ran one continues its run (the production path)."""
    return LocalEnvironment(durable, store=store, one_hop=True, step_execution="dispatch")


def completed_per_cid(history: list[Event]) -> Counter[str]:
    return Counter(e.cid for e in history if e.kind == STEP_COMPLETED)


def well_ordered(history: list[Event]) -> bool:
    """Ids rise; each outcome comes after its step's scheduling."""
    keys = [tuple(int(p) for p in e.entry_id.split("-")) for e in history]
    scheduled: set[str] = set()
    for event in history:
        if event.kind == STEP_SCHEDULED:
            scheduled.add(event.cid)
        elif event.kind == STEP_COMPLETED and event.cid not in scheduled:
            return False
    return keys == sorted(keys) and len(set(keys)) == len(keys)


def test_each_outcome_is_recorded_with_the_next_steps_scheduling_in_one_call(
    durable: Durable,
) -> None:
    runs: list[int] = []
    count_to = counting(durable, runs)
    store = SpiedStore()
    env = one_hop_dispatch(durable, store)
    handle = count_to.start(5)
    assert env.result(handle) == 5
    assert runs == [0, 1, 2, 3, 4]
    # Steps 1-4: outcome + next scheduling + the pass's end in one call. Step 5: the workflow
    # completes, so its outcome is recorded with the lease first and run_completed follows.
    assert store.ahead == {("finish", "finished", ""): 4, ("begin", "begun", ""): 1}
    assert store.record_and_begins == 0
    history = durable.history(handle.run_id)
    assert well_ordered(history) and completed_per_cid(history) == dict.fromkeys(
        ["s1", "s2", "s3", "s4", "s5"], 1
    )
    assert env.passes == 1  # the first pass, queued by start(); every other went ahead


def test_turned_off_the_outcome_is_recorded_first_and_the_log_is_the_same(
    durable: Durable,
) -> None:
    shapes = []
    for on in (True, False):
        runs: list[int] = []
        store = SpiedStore()
        env = LocalEnvironment(
            Durable(durable.app.__class__("t", broker="memory://")),
            store=store,
            one_hop=True,
            step_execution="dispatch",
            speculative_continuation=on,
        )
        count_to = counting(env.durable, runs)
        handle = count_to.start(4)
        assert env.result(handle) == 4 and runs == [0, 1, 2, 3]
        history = env.durable.history(handle.run_id)
        shapes.append([(e.kind, e.cid, e.payload) for e in history])
        assert (sum(store.ahead.values()) > 0) is on
        assert (store.record_and_begins > 0) is not on
    assert shapes[0] == shapes[1]


def test_a_run_that_moved_while_its_step_ran_records_nothing_ahead_and_still_ends_right(
    durable: Durable,
) -> None:
    runs: list[int] = []
    count_to = counting(durable, runs)
    store = SpiedStore()
    env = one_hop_dispatch(durable, store)
    handle = count_to.start(2)
    env.step_once()  # the first pass: s1 is sent
    durable.signal(handle.run_id, "poke", 1)  # the log moves while s1 runs
    assert env.result(handle) == 2
    refused = [key for key in store.ahead if key[1] == "refused"]
    assert refused == [("finish", "refused", "busy")]  # the signal queued a pass
    history = durable.history(handle.run_id)
    assert well_ordered(history)
    assert completed_per_cid(history) == {"s1": 1, "s2": 1}  # each outcome once
    # s2 was sent by the refused continuation, then again by the replay that followed: it ran
    # twice (at least once, as ever), and only one outcome is in the log.
    assert runs == [0, 1, 1]


def test_a_next_step_that_finished_before_the_call_is_taken_in_by_the_same_pass(
    durable: Durable,
) -> None:
    runs: list[int] = []
    count_to = counting(durable, runs)
    store = SpiedStore()
    env = one_hop_dispatch(durable, store)
    handle = count_to.start(3)
    env.step_once()  # the first pass: s1 is queued
    # From now on a sent step runs at once, inside the pass that sends it: s2 finishes (and
    # its outcome is parked) before the call that records s1's outcome and s2's scheduling.
    eager = EagerWorker()
    eager.env, eager.queue = env, env.dispatcher.queue
    env.runtime.dispatcher = eager
    env.run_until_idle()
    assert handle.result(timeout=0) == 3 and runs == [0, 1, 2]
    assert store.ahead == {("finish", "continued", ""): 1}
    history = durable.history(handle.run_id)
    assert well_ordered(history) and completed_per_cid(history) == {"s1": 1, "s2": 1, "s3": 1}


def test_the_outcome_takes_the_store_clocks_time_when_it_is_in_this_process(
    durable: Durable,
) -> None:
    @durable.step
    def slow() -> str:
        env.clock.advance(90)  # the step takes a minute and a half of the store's time
        return "done"

    @durable.workflow
    def timed() -> tuple[float, float]:
        before = now()
        slow()
        return before.timestamp(), now().timestamp()

    env = WorkflowTestEnvironment(
        durable, start=1_800_000_000.0, one_hop=True, step_execution="dispatch"
    )
    handle = timed.start()
    before, after = env.result(handle)
    assert after - before == 90
    (outcome,) = [e for e in durable.history(handle.run_id) if e.kind == STEP_COMPLETED]
    assert outcome.millis == 1_800_000_090_000


def test_entry_times_estimated_ahead_do_not_drift_along_a_run(durable: Durable) -> None:
    """Away from the store's clock (Redis), an outcome's time is the previous entry's plus the
    time since, on the worker's monotonic clock. Each round trip takes a millisecond here; if
    the time since were counted from when the pass ended, every step would lose one."""
    clock = [1000.0]  # seconds, the worker's monotonic clock and the store's, offset
    offset = 1_800_000_000.0
    store = SpiedStore(clock=lambda: clock[0] + offset)
    store.local_now_ms = None  # as on Redis
    record_ahead = store.record_ahead

    def round_trip(*args: Any, **kwargs: Any) -> Any:
        result = record_ahead(*args, **kwargs)
        clock[0] += 0.001
        return result

    store.record_ahead = round_trip  # type: ignore[method-assign]
    ended: list[int] = []

    @durable.step
    def work(i: int) -> int:
        clock[0] += 0.005
        ended.append(int((clock[0] + offset) * 1000))
        return i

    @durable.workflow
    def many(n: int) -> int:
        return sum(work(i) for i in range(n))

    env = one_hop_dispatch(durable, store)
    env.runtime.live.clock = lambda: clock[0]
    handle = many.start(20)
    assert env.result(handle) == sum(range(20))
    assert store.ahead[("finish", "finished", "")] == 19
    outcomes = [e.millis for e in durable.history(handle.run_id) if e.kind == STEP_COMPLETED]
    assert outcomes == ended
