"""gather(): fan-out and fan-in, decided in log order."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from durable_celery import Durable, gather
from durable_celery.testing.local import LocalEnvironment


class FirstBroke(Exception):
    pass


class SecondBroke(Exception):
    pass


def run_steps_in_order(env: LocalEnvironment, cids: Sequence[str]) -> None:
    """Run the queued step items for ``cids`` in that order, leaving everything else queued."""
    queue = env.dispatcher.queue
    for cid in cids:
        (item,) = [i for i in queue if i[0] == "step" and i[3] == cid]
        queue.remove(item)
        queue.appendleft(item)
        env.step_once()


def run_queued_wake(env: LocalEnvironment) -> None:
    """Run the queued orchestrator pass before any queued step."""
    queue = env.dispatcher.queue
    (item,) = [i for i in queue if i[0] == "wake"]
    queue.remove(item)
    queue.appendleft(item)
    env.step_once()


@pytest.mark.parametrize("order", [["s1", "s2", "s3"], ["s3", "s2", "s1"], ["s2", "s3", "s1"]])
def test_gather_returns_results_in_argument_order_whatever_the_completion_order(
    durable: Durable, order: list[str]
) -> None:
    @durable.step
    def label(name: str) -> str:
        return name.upper()

    @durable.workflow
    def wf() -> list[str]:
        return gather(label.defer("a"), label.defer("b"), label.defer("c"))

    env = LocalEnvironment(durable, step_execution="dispatch")
    handle = wf.start()
    env.step_once()  # the first pass schedules all three
    run_steps_in_order(env, order)
    assert [e.cid for e in durable.history(handle.run_id) if e.kind == "step_completed"] == order
    assert env.result(handle) == ["A", "B", "C"]


@pytest.mark.parametrize(
    ("order", "raised"),
    [
        (["s1", "s2", "s3"], "FirstBroke"),
        (["s2", "s1", "s3"], "SecondBroke"),
        (["s3", "s2", "s1"], "SecondBroke"),
    ],
)
def test_gather_raises_the_failure_recorded_first_in_the_log(
    durable: Durable, order: list[str], raised: str
) -> None:
    @durable.step(retries=0)
    def first() -> None:
        raise FirstBroke("one")

    @durable.step(retries=0)
    def second() -> None:
        raise SecondBroke("two")

    @durable.step
    def fine() -> str:
        return "ok"

    @durable.workflow
    def wf() -> str:
        try:
            gather(first.defer(), second.defer(), fine.defer())
        except (FirstBroke, SecondBroke) as exc:
            return type(exc).__name__
        return "no error"

    env = LocalEnvironment(durable, step_execution="dispatch")
    handle = wf.start()
    env.step_once()
    run_steps_in_order(env, order)
    assert env.result(handle) == raised

    history = durable.history(handle.run_id)
    outcomes = [(e.kind, e.cid) for e in history if e.cid and e.kind != "step_scheduled"]
    expected_kinds = {"s1": "step_failed", "s2": "step_failed", "s3": "step_completed"}
    assert outcomes == [(expected_kinds[cid], cid) for cid in order]  # every outcome kept


def test_a_gather_failure_propagates_out_of_the_run_as_the_first_logged_error(
    durable: Durable,
) -> None:
    @durable.step(retries=0)
    def first() -> None:
        raise FirstBroke("one")

    @durable.step(retries=0)
    def second() -> None:
        raise SecondBroke("two")

    @durable.workflow
    def wf() -> list[None]:
        return gather(first.defer(), second.defer())

    env = LocalEnvironment(durable, step_execution="dispatch")
    handle = wf.start()
    env.step_once()
    run_steps_in_order(env, ["s2", "s1"])
    with pytest.raises(SecondBroke, match="two"):
        env.result(handle)


def test_gather_waits_for_every_call_even_after_one_has_failed(durable: Durable) -> None:
    @durable.step(retries=0)
    def broken() -> None:
        raise FirstBroke("early")

    @durable.step
    def slow() -> str:
        return "late"

    @durable.workflow
    def wf() -> str:
        try:
            gather(broken.defer(), slow.defer())
        except FirstBroke:
            return "failed"
        return "no error"

    env = LocalEnvironment(durable, step_execution="dispatch")
    handle = wf.start()
    env.step_once()
    run_steps_in_order(env, ["s1"])
    # s1 failed, but the gather waits for s2 as well: nothing wakes the run yet.
    assert not [i for i in env.dispatcher.queue if i[0] == "wake"]
    assert handle.status() == "running"
    assert [i[3] for i in env.dispatcher.queue] == ["s2"]
    assert env.result(handle) == "failed"


def test_gather_refuses_a_value_that_is_not_a_deferred_call(durable: Durable) -> None:
    @durable.step
    def inc(x: int) -> int:
        return x + 1

    @durable.workflow
    def wf() -> list[int]:
        return gather(inc.defer(1), inc(2))  # type: ignore[arg-type]

    env = LocalEnvironment(durable, step_execution="dispatch")
    with pytest.raises(TypeError, match=r"argument 1 is int.*step\.defer\(\.\.\.\)"):
        env.result(wf.start())


def test_gather_of_nothing_returns_an_empty_list_without_waiting(durable: Durable) -> None:
    @durable.workflow
    def wf() -> list[int]:
        return gather()

    env = LocalEnvironment(durable, step_execution="dispatch")
    handle = wf.start()
    assert env.result(handle) == []
    assert env.passes == 1
