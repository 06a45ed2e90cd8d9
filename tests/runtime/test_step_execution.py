"""Where a step runs: inline in the orchestrator's pass, or dispatched as its own task."""

from __future__ import annotations

import pytest

from durable_celery import Durable, current_step, gather
from durable_celery.testing.local import LocalDispatcher, LocalEnvironment
from durable_celery.workflow import StepInfo


def test_auto_runs_a_lone_sequential_step_inline_and_dispatches_fan_out(
    durable: Durable,
) -> None:
    @durable.step
    def inc(x: int) -> int:
        return x + 1

    @durable.workflow
    def wf() -> int:
        a = inc(1)
        b = inc(a)
        return a + b + sum(gather(inc.defer(10), inc.defer(20)))

    env = LocalEnvironment(durable, step_execution="auto")
    assert env.result(wf.start()) == 2 + 3 + 11 + 21
    assert env.dispatcher.sent_steps == 2  # only the gather's branches


def test_auto_dispatches_a_step_whose_queue_this_worker_does_not_consume(
    durable: Durable,
) -> None:
    @durable.step(queue="mail")
    def send(to: str) -> str:
        return f"sent to {to}"

    @durable.step
    def local(x: int) -> int:
        return x

    @durable.workflow
    def wf() -> str:
        local(1)
        return send("ada")

    dispatcher = LocalDispatcher(consumes=lambda step: step.queue != "mail")
    env = LocalEnvironment(durable, dispatcher=dispatcher, step_execution="auto")
    assert env.result(wf.start()) == "sent to ada"
    assert dispatcher.sent_steps == 1


def test_auto_dispatches_a_step_with_a_time_limit(durable: Durable) -> None:
    @durable.step(time_limit=30)
    def bounded(x: int) -> int:
        return x

    @durable.workflow
    def wf() -> int:
        return bounded(3)

    env = LocalEnvironment(durable, step_execution="auto")
    assert env.result(wf.start()) == 3
    assert env.dispatcher.sent_steps == 1


@pytest.mark.parametrize(
    ("default", "override", "sent"),
    [
        ("inline", "dispatch", 1),
        ("dispatch", "inline", 0),
        ("inline", None, 0),
        ("dispatch", None, 1),
    ],
)
def test_a_steps_own_execution_mode_overrides_the_default(
    durable: Durable, default: str, override: str | None, sent: int
) -> None:
    @durable.step(execution=override)
    def work(x: int) -> int:
        return x * 2

    @durable.workflow
    def wf() -> int:
        return work(4)

    env = LocalEnvironment(durable, step_execution=default)
    assert env.result(wf.start()) == 8
    assert env.dispatcher.sent_steps == sent


def test_an_unknown_execution_mode_is_refused_when_the_step_is_defined(durable: Durable) -> None:
    with pytest.raises(ValueError, match="execution='sometimes' is not valid"):

        @durable.step(execution="sometimes")
        def work() -> None:
            return None


@pytest.mark.parametrize("mode", ["inline", "dispatch"])
def test_a_running_step_knows_its_run_correlation_id_and_attempt(
    durable: Durable, mode: str
) -> None:
    infos: list[StepInfo] = []

    @durable.step(retries=2, backoff=0)
    def introspect() -> str:
        info = current_step()
        assert info is not None
        infos.append(info)
        if info.attempt < 3:
            raise ConnectionError("again")
        return info.idempotency_key

    @durable.workflow
    def wf() -> str:
        introspect()
        return introspect()

    env = LocalEnvironment(durable, step_execution=mode)
    handle = wf.start()
    assert env.result(handle) == f"{handle.run_id}:s2"
    assert [(i.cid, i.attempt) for i in infos] == [
        ("s1", 1),
        ("s1", 2),
        ("s1", 3),
        ("s2", 1),
        ("s2", 2),
        ("s2", 3),
    ]
    assert {i.run_id for i in infos} == {handle.run_id}
    assert {i.name for i in infos} == {introspect.name}
    assert len({i.idempotency_key for i in infos if i.cid == "s1"}) == 1
    assert current_step() is None
