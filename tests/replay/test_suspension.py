"""Suspension is a BaseException: workflow code that catches ``Exception`` cannot swallow it."""

from __future__ import annotations

import pytest

from durable_celery import Durable
from durable_celery.errors import Suspension
from durable_celery.testing.local import LocalEnvironment


def test_suspension_is_a_base_exception_that_except_exception_does_not_catch() -> None:
    assert issubclass(Suspension, BaseException)
    assert not issubclass(Suspension, Exception)


def test_except_exception_around_a_pending_step_does_not_swallow_the_suspension(
    durable: Durable,
) -> None:
    seen: list[object] = []

    @durable.step
    def fetch(x: int) -> int:
        return x + 1

    @durable.workflow
    def careful(x: int) -> object:
        try:
            value: object = fetch(x)
        except Exception:
            value = "swallowed"
        seen.append(value)
        return value

    # Without live executions the first pass really unwinds with a Suspension.
    env = LocalEnvironment(durable, step_execution="dispatch", live_workflows=False)
    handle = careful.start(41)
    env.step_once()  # the first pass: schedules fetch and suspends
    assert handle.status() == "running"
    assert seen == []  # the except clause never ran

    assert env.result(handle) == 42
    assert seen == [42]


def test_except_exception_does_not_swallow_the_suspension_of_an_abandoned_live_run(
    durable: Durable,
) -> None:
    seen: list[object] = []

    @durable.step
    def fetch(x: int) -> int:
        return x + 1

    @durable.workflow
    def careful(x: int) -> object:
        try:
            value: object = fetch(x)
        except Exception:
            value = "swallowed"
        seen.append(value)
        return value

    env = LocalEnvironment(durable, step_execution="dispatch", live_workflows=True)
    handle = careful.start(1)
    env.step_once()  # parks the workflow in a greenlet, waiting for fetch
    assert len(env.runtime.live) == 1
    env.runtime.live.drop(handle.run_id)  # unwinds the parked stack with a Suspension
    assert seen == []

    assert env.result(handle) == 2
    assert seen == [2]


@pytest.mark.parametrize("live", [False, True], ids=["replayed", "live"])
def test_a_workflow_that_swallows_the_suspension_cannot_act_on_the_swallowed_path(
    durable: Durable, live: bool
) -> None:
    echoed: list[int] = []

    @durable.step
    def fetch(x: int) -> int:
        return x + 1

    @durable.step
    def echo(x: int) -> int:
        echoed.append(x)
        return x

    @durable.workflow
    def reckless(x: int) -> int:
        try:
            value = fetch(x)
        except BaseException:  # the point of the test
            value = -1
        return echo(value)

    env = LocalEnvironment(durable, step_execution="dispatch", live_workflows=live)
    handle = reckless.start(1)
    env.step_once()  # the first pass: schedules fetch and waits for it
    if live:
        env.runtime.live.drop(handle.run_id)  # unwind the parked stack: a Suspension is raised
    assert env.result(handle) == 2
    assert echoed == [2]
    kinds = [e.kind for e in durable.history(handle.run_id)]
    assert kinds.count("step_scheduled") == 2
    assert kinds.count("run_completed") == 1
