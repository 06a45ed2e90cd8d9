"""``async def`` workflows on the deterministic loop: awaited steps, asyncio.gather, asyncio.wait,
asyncio.wait_for and asyncio.sleep are durable, replay the same, and give the same results in
every execution mode, with live workflows on or off."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from durable_celery import Durable, current_step, wait_for_event
from durable_celery.replay import events as ev
from durable_celery.testing import WorkflowTestEnvironment, replay_history

from .support import of_kind, outcomes_per_cid, run_step, run_wake, shape

START = 1_000_000.0  # the virtual clock's start: far from the wall clock

MODES = [
    pytest.param("dispatch", True, id="dispatch-live"),
    pytest.param("dispatch", False, id="dispatch-replay"),
    pytest.param("inline", True, id="inline-live"),
    pytest.param("inline", False, id="inline-replay"),
]


def assert_replays(durable: Durable, env: WorkflowTestEnvironment, run_id: str) -> None:
    report = replay_history(durable.history(run_id), durable.registry, env.runtime.codec, run_id)
    assert report.matches_record is True, report
    assert report.next_commands == []


def order_flow(durable: Durable) -> Any:
    """Every awaitable kind at once; returns what it saw, including the loop's clock."""

    @durable.step
    def price(item: str) -> int:
        return len(item) * 100

    @durable.step
    async def reserve(item: str) -> str:
        await asyncio.sleep(0.001)  # real asyncio inside an async step, inline or dispatched
        info = current_step()
        assert info is not None
        return f"{item}@{info.cid}"

    @durable.workflow
    async def order(items: list[str]) -> dict[str, Any]:
        loop = asyncio.get_running_loop()
        started = loop.time()
        total = sum(await asyncio.gather(*(price(i) for i in items)))
        reserved = await reserve(items[0])
        await asyncio.sleep(3600)
        woke = loop.time()
        shipped = asyncio.ensure_future(wait_for_event(f"shipped:{items[0]}"))
        done, pending = await asyncio.wait(
            [shipped, asyncio.ensure_future(price("x"))], return_when=asyncio.FIRST_COMPLETED
        )
        first_done = [t.result() for t in done]
        tracking = await shipped
        return {
            "total": total,
            "reserved": reserved,
            "started": started,
            "woke": woke,
            "first": first_done,
            "pending": len(pending),
            "tracking": tracking,
        }

    return order


@pytest.mark.parametrize(("mode", "live"), MODES)
def test_an_async_workflow_awaits_steps_gathers_waits_and_sleeps_durably(
    durable: Durable, mode: str, live: bool
) -> None:
    order = order_flow(durable)
    env = WorkflowTestEnvironment(durable, start=START, step_execution=mode, live_workflows=live)
    run = order.start(["book", "pen"])
    env.run_until_idle()
    assert run.status() == "running"  # sleeping for an hour; no worker held
    env.advance(3600)
    durable.send_event("shipped:book", "TRACK-1")
    assert env.result(run) == {
        "total": 700,
        "reserved": "book@s3",
        "started": START,  # the loop's clock is the log's clock, not the wall clock
        "woke": START + 3600,
        "first": [100],  # the step s4 finished before the event arrived
        "pending": 1,
        "tracking": "TRACK-1",
    }
    history = durable.history(run.run_id)
    assert [e.cid for e in history if ev.records_call(e)] == ["s1", "s2", "s3", "s4"]
    assert of_kind(history, ev.TIMER_FIRED) == ["t1"]
    assert all(n == 1 for n in outcomes_per_cid(history).values())
    assert_replays(durable, env, run.run_id)


@pytest.mark.parametrize("mode", ["dispatch", "inline"])
def test_live_workflows_on_or_off_give_the_same_result_and_the_same_log(
    durable: Durable, mode: str
) -> None:
    order = order_flow(durable)
    seen = []
    for live in (True, False):
        env = WorkflowTestEnvironment(
            durable, start=START, step_execution=mode, live_workflows=live
        )
        run = order.start(["book", "pen"])
        env.advance(3600)
        durable.send_event("shipped:book", "TRACK-1")
        seen.append((env.result(run), shape(durable.history(run.run_id))))
    assert seen[0] == seen[1]


def test_every_mode_gives_the_same_result(durable: Durable) -> None:
    order = order_flow(durable)
    results = []
    for mode in ("dispatch", "inline", "auto"):
        env = WorkflowTestEnvironment(durable, start=START, step_execution=mode)
        run = order.start(["book", "pen"])
        env.advance(3600)
        durable.send_event("shipped:book", "TRACK-1")
        results.append(env.result(run))
    assert results[0] == results[1] == results[2]


@pytest.mark.parametrize("live", [True, False])
def test_asyncio_wait_first_completed_returns_the_call_logged_first(
    durable: Durable, live: bool
) -> None:
    @durable.step
    def ident(x: int) -> int:
        return x

    @durable.workflow
    async def race() -> tuple[list[int], int]:
        tasks = [asyncio.ensure_future(ident(i)) for i in (1, 2, 3)]
        done, pending = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        for task in pending:
            task.cancel()
        return [t.result() for t in done], len(pending)

    env = WorkflowTestEnvironment(durable, step_execution="dispatch", live_workflows=live)
    run = race.start()
    env.step_once()
    run_step(env, "s3")
    run_step(env, "s1")  # also in the log before the pass, but after s3
    run_wake(env)
    assert run.result(timeout=0) == ([3], 2)
    env.run_until_idle()
    assert outcomes_per_cid(durable.history(run.run_id)) == {"s1": 1, "s2": 1, "s3": 1}
    assert_replays(durable, env, run.run_id)


@pytest.mark.parametrize("live", [True, False])
def test_asyncio_wait_for_times_out_on_a_durable_timer_deterministically(
    durable: Durable, live: bool
) -> None:
    @durable.step
    def ident(x: int) -> int:
        return x

    @durable.workflow
    async def patient() -> list[Any]:
        seen: list[Any] = []
        try:
            seen.append(await asyncio.wait_for(wait_for_event("reply"), timeout=30))
        except asyncio.TimeoutError:
            seen.append("no reply")
        try:
            seen.append(await asyncio.wait_for(ident(5), timeout=30))  # held back below
        except asyncio.TimeoutError:
            seen.append("step too slow")
        seen.append(await asyncio.wait_for(ident(6), timeout=30))
        return seen

    env = WorkflowTestEnvironment(durable, step_execution="dispatch", live_workflows=live)
    run = patient.start()
    env.run_until_idle()
    env.clock.advance(30)  # no reply: the first deadline passes
    assert env.runtime.timers.fire_due() == 1
    run_wake(env)
    assert [i[0] for i in env.dispatcher.queue] == ["step"]  # s1, held back
    env.clock.advance(30)  # s1 has not finished: its deadline passes too
    assert env.runtime.timers.fire_due() == 1
    run_wake(env)
    env.run_until_idle()  # s1 finishes late (recorded, not delivered); s2 in time
    assert run.result(timeout=0) == ["no reply", "step too slow", 6]

    history = durable.history(run.run_id)
    settled = [e.cid for e in history if e.kind in ev.OUTCOME_KINDS]
    assert settled[:3] == ["t1", "t2", "s1"]  # each timeout logged before what it cut short
    assert outcomes_per_cid(history)["s1"] == 1
    assert_replays(durable, env, run.run_id)


@pytest.mark.parametrize("mode", ["inline", "dispatch"])
def test_an_async_step_gets_a_real_event_loop_even_inline_inside_an_async_workflow(
    durable: Durable, mode: str
) -> None:
    @durable.step
    async def lookup(key: str) -> dict[str, Any]:
        loop = asyncio.get_running_loop()
        # Real asyncio: a thread pool and a real clock, which a workflow's loop refuses.
        value = await loop.run_in_executor(None, str.upper, key)
        await asyncio.sleep(0.001)
        return {"value": value, "loop": type(loop).__name__, "clock": loop.time() > 0}

    @durable.workflow
    async def async_flow(key: str) -> list[Any]:
        loop = asyncio.get_running_loop()
        first = await lookup(key)
        second = await lookup(key + "2")
        return [first, second, type(loop).__name__, asyncio.get_running_loop() is loop]

    @durable.workflow
    def sync_flow(key: str) -> Any:
        return lookup(key)

    env = WorkflowTestEnvironment(durable, step_execution=mode)
    result = env.result(async_flow.start("k"))
    assert result[0]["value"] == "K" and result[1]["value"] == "K2"
    assert result[0]["loop"] != "DeterministicLoop" and result[0]["clock"]
    assert result[2:] == ["DeterministicLoop", True]  # the workflow's own loop is back
    assert env.result(sync_flow.start("s"))["value"] == "S"


def test_asyncio_wait_with_a_timeout_returns_what_finished_by_the_durable_deadline(
    durable: Durable,
) -> None:
    @durable.step
    def ident(x: int) -> int:
        return x

    @durable.workflow
    async def wf() -> tuple[list[int], int]:
        tasks = [asyncio.ensure_future(ident(i)) for i in (1, 2, 3)]
        done, pending = await asyncio.wait(tasks, timeout=45)
        return sorted(t.result() for t in done), len(pending)

    env = WorkflowTestEnvironment(durable, step_execution="dispatch")
    run = wf.start()
    env.step_once()
    run_step(env, "s2")
    env.clock.advance(45)
    assert env.runtime.timers.fire_due() == 1
    run_wake(env)
    assert run.result(timeout=0) == ([2], 2)
    env.run_until_idle()
    assert_replays(durable, env, run.run_id)
