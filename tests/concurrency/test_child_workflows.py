"""Child workflows: a handle whose result() suspends the parent durably, a completion that
wakes the parent (no timers, no polling), caller-chosen ids, errors that cross, and
cancellation that cascades to attached children only."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from durable_celery import (
    ChildHandle,
    Durable,
    DurableError,
    WorkflowCancelled,
    first,
    gather,
    sleep,
    wait_for_event,
)
from durable_celery.replay import events as ev
from durable_celery.testing import (
    LocalDispatcher,
    LocalEnvironment,
    WorkflowTestEnvironment,
    replay_history,
)

from .support import of_kind, outcomes_per_cid


class Broken(Exception):
    pass


class WakeLog(LocalDispatcher):
    """Remembers which run each wake was for."""

    def __init__(self) -> None:
        super().__init__()
        self.woken: list[str] = []

    def wake(self, run_id: str, countdown: float | None = None) -> None:
        self.woken.append(run_id)
        super().wake(run_id, countdown)


def assert_replays(durable: Durable, env: LocalEnvironment, run_id: str) -> None:
    report = replay_history(durable.history(run_id), durable.registry, env.runtime.codec, run_id)
    assert report.matches_record is True, report
    assert report.next_commands == []


def test_a_child_result_suspends_the_parent_until_the_child_finishing_wakes_it(
    durable: Durable,
) -> None:
    @durable.step
    def double(x: int) -> int:
        return 2 * x

    @durable.workflow
    def child(x: int) -> int:
        sleep(86400)  # a day: the parent must not poll meanwhile
        return double(x)

    seen: list[Any] = []

    @durable.workflow
    def parent(x: int) -> int:
        handle = child.start(x)
        seen.append((type(handle), handle.run_id, handle.workflow))
        return handle.result() + 1

    dispatcher = WakeLog()
    env = WorkflowTestEnvironment(durable, step_execution="dispatch", dispatcher=dispatcher)
    run = parent.start(20)
    env.run_until_idle()

    child_id = f"{run.run_id}.c1"
    assert seen[0] == (ChildHandle, child_id, child.name)
    assert run.status() == "running"
    assert durable.run(child_id).status() == "running"
    assert dispatcher.woken.count(run.run_id) == 1  # the start only
    assert of_kind(durable.history(run.run_id), ev.TIMER_STARTED) == []

    env.advance(days=1)
    assert env.result(run) == 41
    assert dispatcher.woken.count(run.run_id) == 2  # the start, then the child's completion
    history = durable.history(run.run_id)
    assert [e.kind for e in history] == [
        ev.RUN_STARTED,
        ev.CHILD_STARTED,
        ev.CHILD_FINISHED,
        ev.RUN_COMPLETED,
    ]
    finished = history[2]
    assert (finished.cid, finished.meta["child"], finished.meta["status"]) == (
        "c1",
        child_id,
        ev.RUN_COMPLETED,
    )
    child_log = durable.history(child_id)
    assert child_log[0].meta["parent"] == run.run_id
    assert_replays(durable, env, run.run_id)


def test_a_child_can_be_started_under_a_caller_chosen_run_id(durable: Durable) -> None:
    @durable.workflow
    def invoice(order: str) -> str:
        return f"invoice for {order}"

    @durable.workflow
    def parent(order: str) -> tuple[str, str]:
        handle = invoice.start(order, run_id=f"invoice-{order}")
        return handle.run_id, handle.result()

    env = LocalEnvironment(durable)
    run = parent.start("o-7")
    assert env.result(run) == ("invoice-o-7", "invoice for o-7")
    assert durable.run("invoice-o-7").result(timeout=0) == "invoice for o-7"
    (started,) = [e for e in durable.history(run.run_id) if e.kind == ev.CHILD_STARTED]
    assert started.meta["child"] == "invoice-o-7"


def test_a_chosen_child_id_already_taken_by_another_run_fails_in_the_parent(
    durable: Durable,
) -> None:
    @durable.workflow
    def invoice(order: str) -> str:
        return order

    @durable.workflow
    def parent() -> str:
        try:
            return invoice.start("x", run_id="taken").result()
        except DurableError as exc:
            return str(exc)

    env = LocalEnvironment(durable)
    env.result(invoice.start("someone else's", run_id="taken"))
    message = env.result(parent.start())
    assert "already used by another run" in message and "'taken'" in message
    assert durable.run("taken").result(timeout=0) == "someone else's"  # left alone


@pytest.mark.parametrize("mode", ["dispatch", "inline"])
def test_a_failing_child_raises_its_error_in_the_parent(durable: Durable, mode: str) -> None:
    @durable.step(retries=0)
    def charge(cents: int) -> None:
        raise Broken(f"card declined for {cents}")

    @durable.workflow
    def child(cents: int) -> None:
        charge(cents)

    @durable.workflow
    def parent() -> str:
        try:
            child.start(500).result()
        except Broken as exc:
            return f"parent saw: {exc}"
        return "no error"

    @durable.workflow
    def careless_parent() -> None:
        child.start(700).result()

    env = LocalEnvironment(durable, step_execution=mode)
    run = parent.start()
    assert env.result(run) == "parent saw: card declined for 500"
    (finished,) = [e for e in durable.history(run.run_id) if e.kind == ev.CHILD_FINISHED]
    assert finished.meta["status"] == ev.RUN_FAILED
    assert finished.meta["error"].endswith("Broken")
    assert_replays(durable, env, run.run_id)

    careless = careless_parent.start()
    with pytest.raises(Broken, match="card declined for 700"):
        env.result(careless)
    assert_replays(durable, env, careless.run_id)


def test_cancelling_a_parent_cancels_its_children_but_not_detached_ones(
    durable: Durable,
) -> None:
    @durable.workflow
    def waiter(key: str) -> Any:
        return wait_for_event(key)

    @durable.workflow
    def middle(key: str) -> Any:
        return waiter.start(f"{key}:inner", run_id=f"{key}-grandchild").result()

    @durable.workflow
    def parent() -> list[Any]:
        attached = middle.start("a", run_id="attached")
        detached = waiter.start("d", run_id="detached", detached=True)
        return gather(attached.pending, detached.pending)

    env = LocalEnvironment(durable)
    run = parent.start()
    env.run_until_idle()
    assert {r: durable.run(r).status() for r in ("attached", "a-grandchild", "detached")} == {
        "attached": "running",
        "a-grandchild": "running",
        "detached": "running",
    }

    run.cancel("changed my mind")
    env.run_until_idle()

    assert run.status() == "cancelled"
    with pytest.raises(WorkflowCancelled):
        run.result(timeout=0)
    assert durable.run("attached").status() == "cancelled"
    assert durable.run("a-grandchild").status() == "cancelled"  # the cascade goes all the way
    assert durable.run("detached").status() == "running"
    durable.send_event("d", "still here")
    env.run_until_idle()
    assert durable.run("detached").result(timeout=0) == "still here"

    history = durable.history(run.run_id)
    assert of_kind(history, ev.RUN_CANCELLED) == [""]  # once, though children reported after
    assert of_kind(history, ev.RUN_COMPLETED) == []
    assert all(n == 1 for n in outcomes_per_cid(history).values())


def test_a_cancelled_child_raises_workflow_cancelled_in_a_running_parent(
    durable: Durable,
) -> None:
    @durable.workflow
    def waiter() -> Any:
        return wait_for_event("never")

    @durable.workflow
    def parent() -> str:
        try:
            waiter.start(run_id="kid").result()
        except WorkflowCancelled:
            return "child was cancelled"
        return "no error"

    env = LocalEnvironment(durable)
    run = parent.start()
    env.run_until_idle()
    durable.run("kid").cancel()
    assert env.result(run) == "child was cancelled"


@pytest.mark.parametrize("finish_order", [["a", "b", "c"], ["c", "a", "b"]])
def test_children_can_be_gathered_and_raced_like_steps(
    durable: Durable, finish_order: list[str]
) -> None:
    @durable.workflow
    def waiter(key: str) -> str:
        return str(wait_for_event(key))

    @durable.workflow
    def parent() -> dict[str, Any]:
        handles = [waiter.start(k, run_id=f"kid-{k}") for k in ("a", "b", "c")]
        winner = first(*(h.pending for h in handles))
        return {"first": winner, "all": gather(*(h.pending for h in handles))}

    env = LocalEnvironment(durable)
    run = parent.start()
    env.run_until_idle()
    for key in finish_order:
        durable.send_event(key, key.upper())
        env.run_until_idle()
    winner = "abc".index(finish_order[0])
    assert env.result(run) == {"first": (winner, finish_order[0].upper()), "all": ["A", "B", "C"]}
    assert_replays(durable, env, run.run_id)


def test_an_async_parent_awaits_its_child(durable: Durable) -> None:
    @durable.step
    def double(x: int) -> int:
        return 2 * x

    @durable.workflow
    def child(x: int) -> int:
        return double(x)

    @durable.workflow
    async def parent(x: int) -> list[int]:
        one = await child.start(x)  # the handle itself is awaitable
        two = await child.start(x + 1).result()
        three, four = await asyncio.gather(child.start(5), child.start(6).result())
        return [one, two, three, four]

    env = LocalEnvironment(durable, step_execution="dispatch")
    run = parent.start(1)
    assert env.result(run) == [2, 4, 10, 12]
    finished = of_kind(durable.history(run.run_id), ev.CHILD_FINISHED)
    assert sorted(finished) == ["c1", "c2", "c3", "c4"]
    assert_replays(durable, env, run.run_id)
