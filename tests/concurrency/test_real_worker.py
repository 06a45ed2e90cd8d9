"""Fan-out, races, children and async workflows on a real Celery worker and the session's real
Redis: branches really run at the same time, losers are revoked by task id, children wake
their parents."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest
from celery.worker import state as worker_state
from integration.support import Gate, count_per_cid, kinds, wait_until

from durable_celery import Durable, current_step, first, gather
from durable_celery.replay import events as ev
from durable_celery.testing import replay_history
from durable_celery.testing.embedded import run_worker

from .conftest import AppFactory

pytestmark = pytest.mark.timeout(30)

WIDTH = 4


def assert_replays(durable: Durable, run_id: str) -> None:
    history = durable.history(run_id)
    report = replay_history(history, durable.registry, durable.runtime.codec, run_id)
    assert report.matches_record is True and report.next_commands == []


def test_gather_and_map_branches_run_at_the_same_time_on_the_workers(
    make_app: AppFactory,
) -> None:
    app, durable = make_app(durable_step_execution="auto")
    # Every branch waits for all the others: only branches running side by side get past it.
    barrier = threading.Barrier(WIDTH, timeout=10)
    threads: set[int] = set()

    @durable.step(retries=0)
    def meet(i: int) -> str:
        threads.add(threading.get_ident())
        barrier.wait()
        info = current_step()
        assert info is not None
        return f"{i}:{info.cid}"

    @durable.workflow
    def fan_out(n: int) -> dict[str, list[str]]:
        gathered = gather(*(meet.defer(i) for i in range(n)))
        mapped = durable.map(meet, range(n, 2 * n))
        return {"gathered": gathered, "mapped": mapped}

    with run_worker(app, concurrency=WIDTH):
        handle = fan_out.start(WIDTH)
        result = handle.result(timeout=20)

    assert result == {
        "gathered": [f"{i}:s{i + 1}" for i in range(WIDTH)],
        "mapped": [f"{i}:s{i + 1}" for i in range(WIDTH, 2 * WIDTH)],
    }
    assert len(threads) == WIDTH
    history = durable.history(handle.run_id)
    first_batch = [e.kind for e in history][1 : 1 + WIDTH]
    assert first_batch == [ev.STEP_SCHEDULED] * WIDTH  # all sent before any completed
    assert count_per_cid(history) == {f"s{i}": 1 for i in range(1, 2 * WIDTH + 1)}
    assert_replays(durable, handle.run_id)


@pytest.mark.parametrize("cancel_losers", [True, False])
def test_a_race_on_a_worker_revokes_its_losers_by_task_id_or_lets_them_finish(
    make_app: AppFactory, cancel_losers: bool
) -> None:
    app, durable = make_app(durable_step_execution="dispatch")
    gate = Gate()
    revoked: list[list[str]] = []

    @durable.step
    def fast() -> str:
        return "fast"

    @durable.step
    def slow(n: int) -> str:
        gate.wait()
        return f"slow {n}"

    @durable.workflow
    def race() -> tuple[int, str]:
        return first(fast.defer(), slow.defer(1), slow.defer(2), cancel_losers=cancel_losers)

    dispatcher: Any = durable.runtime.dispatcher
    real_revoke = dispatcher.revoke

    def recording_revoke(task_ids: list[str]) -> None:
        revoked.append(list(task_ids))
        real_revoke(task_ids)

    dispatcher.revoke = recording_revoke
    try:
        with run_worker(app, concurrency=4):
            handle = race.start()
            assert handle.result(timeout=15) == (0, "fast")
            losers = [f"{handle.run_id}:s2", f"{handle.run_id}:s3"]
            if cancel_losers:
                assert revoked == [losers]
                wait_until(  # the broadcast reached the worker
                    lambda: all(t in worker_state.revoked for t in losers), what="revokes"
                )
            else:
                assert revoked == []
            gate.open()  # the losers were already running: they finish, and are recorded
            wait_until(
                lambda: len(count_per_cid(durable.history(handle.run_id))) == 3,
                what="the losers' outcomes",
            )
    finally:
        gate.open()

    history = durable.history(handle.run_id)
    assert count_per_cid(history) == {"s1": 1, "s2": 1, "s3": 1}
    completed_at = kinds(history).index(ev.RUN_COMPLETED)
    assert {e.cid for e in history[completed_at:] if e.kind == ev.STEP_COMPLETED} == {"s2", "s3"}
    assert handle.result(timeout=0) == (0, "fast")
    assert_replays(durable, handle.run_id)


def test_children_on_a_worker_wake_their_parent_when_they_finish(make_app: AppFactory) -> None:
    app, durable = make_app()

    @durable.step
    def double(x: int) -> int:
        return 2 * x

    @durable.workflow
    def child(x: int) -> int:
        return double(x) + double(x + 1)

    @durable.workflow
    def parent(xs: list[int]) -> list[int]:
        handles = [child.start(x, run_id=f"child-{x}") for x in xs]
        return gather(*(h.pending for h in handles))

    with run_worker(app, concurrency=4):
        handle = parent.start([1, 10])
        assert handle.result(timeout=15) == [6, 42]

    history = durable.history(handle.run_id)
    assert sorted(kinds(history)) == sorted(
        [
            ev.RUN_STARTED,
            ev.CHILD_STARTED,
            ev.CHILD_STARTED,
            ev.CHILD_FINISHED,
            ev.CHILD_FINISHED,
            ev.RUN_COMPLETED,
        ]
    )  # no timer: nobody polled
    assert [durable.run(f"child-{x}").result(timeout=0) for x in (1, 10)] == [6, 42]
    assert_replays(durable, handle.run_id)


@pytest.mark.parametrize("live", [True, False])
def test_an_async_workflow_on_a_worker_gives_the_same_result_live_or_replayed(
    make_app: AppFactory, live: bool
) -> None:
    app, durable = make_app(durable_step_execution="dispatch", durable_live_workflows=live)

    @durable.step
    def square(x: int) -> int:
        return x * x

    @durable.step
    async def cube(x: int) -> int:
        await asyncio.sleep(0.01)
        return x**3

    @durable.workflow
    async def shapes(n: int) -> dict[str, Any]:
        squares = await asyncio.gather(*(square(i) for i in range(n)))
        tasks = [asyncio.ensure_future(cube(i)) for i in range(n)]
        done, _ = await asyncio.wait(tasks, return_when=asyncio.ALL_COMPLETED)
        return {"squares": squares, "cubes": sorted(t.result() for t in done)}

    with run_worker(app, concurrency=4):
        handle = shapes.start(4)
        assert handle.result(timeout=15) == {"squares": [0, 1, 4, 9], "cubes": [0, 1, 8, 27]}
    assert count_per_cid(durable.history(handle.run_id)) == {f"s{i}": 1 for i in range(1, 9)}
    assert_replays(durable, handle.run_id)
