"""Starting runs and asking about them: idempotent ids, status, result timeouts, no worker yet."""

from __future__ import annotations

import concurrent.futures

import pytest

from durable_celery import DurableError, RunNotFound, UnknownWorkflowError, WorkflowCancelled
from durable_celery.testing.embedded import run_worker

from .support import AppFactory, Gate, kinds

pytestmark = pytest.mark.timeout(60)


def test_starting_twice_with_one_run_id_makes_one_run(make_app: AppFactory) -> None:
    app, durable = make_app()
    calls: list[int] = []

    @durable.step
    def count(x: int) -> int:
        calls.append(x)
        return x

    @durable.workflow
    def flow(x: int) -> int:
        return count(x)

    with run_worker(app, concurrency=2):
        first = flow.start(1, run_id="fixed")
        second = flow.start(2, run_id="fixed")  # another input: still the first run
        assert (first.created, second.created) == (True, False)
        assert first == second and first.run_id == "fixed"
        assert second.result(timeout=15) == 1
        third = flow.start(3, run_id="fixed")  # after it finished, too
        assert third.created is False and third.result(timeout=1) == 1
    assert calls == [1]
    assert kinds(durable.history("fixed")).count("run_started") == 1


def test_a_run_id_of_another_workflow_is_refused(make_app: AppFactory) -> None:
    _, durable = make_app()

    @durable.workflow
    def one() -> None: ...

    @durable.workflow
    def two() -> None: ...

    one.start(run_id="taken")
    with pytest.raises(DurableError, match="already used by a run of workflow"):
        two.start(run_id="taken")


def test_status_and_result_follow_a_run_that_waits(make_app: AppFactory) -> None:
    app, durable = make_app(durable_step_execution="dispatch")
    gate = Gate()

    @durable.step
    def approve(order: str) -> str:
        gate.wait()
        return f"approved:{order}"

    @durable.workflow
    def review(order: str) -> str:
        return approve(order)

    with run_worker(app, concurrency=2):
        try:
            handle = review.start("o-7")
            assert gate.entered.wait(15)
            assert handle.status() == "running"
            with pytest.raises(TimeoutError, match="did not finish within"):
                handle.result(timeout=0.01)
            assert durable.run(handle.run_id).status() == "running"
        finally:
            gate.open()
        assert handle.result(timeout=15) == "approved:o-7"
    assert handle.status() == "completed"


def test_a_failed_run_reports_failed(make_app: AppFactory) -> None:
    app, durable = make_app()

    @durable.workflow
    def doomed() -> None:
        raise RuntimeError("out of luck")

    with run_worker(app, concurrency=2):
        handle = doomed.start()
        with pytest.raises(RuntimeError, match="out of luck"):
            handle.result(timeout=15)
    assert handle.status() == "failed"


def test_a_run_started_without_a_worker_waits_for_one(make_app: AppFactory) -> None:
    app, durable = make_app()

    @durable.step
    def shout(word: str) -> str:
        return word.upper()

    @durable.workflow
    def flow(word: str) -> str:
        return shout(word) + "!"

    handle = flow.start("hello")  # returns at once: nothing consumes the queue yet
    assert handle.status() == "running"
    with pytest.raises(TimeoutError):
        handle.result(timeout=0.2)
    assert kinds(durable.history(handle.run_id)) == ["run_started"]
    with run_worker(app, concurrency=2):
        assert handle.result(timeout=15) == "HELLO!"


def test_start_by_name_and_handles_on_existing_runs(make_app: AppFactory) -> None:
    app, durable = make_app()

    @durable.workflow(name="shop.echo")
    def echo(value: str) -> str:
        return value

    with run_worker(app, concurrency=2):
        handle = durable.start("shop.echo", "ping")
        assert handle.result(timeout=15) == "ping"
    again = durable.run(handle.run_id)
    assert again.created is False and again.result(timeout=1) == "ping"
    with pytest.raises(RunNotFound):
        durable.run("no-such-run")
    with pytest.raises(UnknownWorkflowError, match=r"'shop\.missing'.*known:.*shop\.echo"):
        durable.start("shop.missing")


def test_a_result_can_be_awaited_from_many_threads(make_app: AppFactory) -> None:
    app, durable = make_app()

    @durable.step
    def square(x: int) -> int:
        return x * x

    @durable.workflow
    def flow(xs: list[int]) -> int:
        return sum(square(x) for x in xs)

    with run_worker(app, concurrency=4):
        handles = [flow.start([i, i + 1]) for i in range(8)]
        with concurrent.futures.ThreadPoolExecutor(4) as pool:
            results = list(pool.map(lambda h: h.result(timeout=20), handles))
    assert results == [i * i + (i + 1) * (i + 1) for i in range(8)]
    assert {h.status() for h in handles} == {"completed"}


def test_a_cancelled_run_reports_cancelled(make_app: AppFactory) -> None:
    app, durable = make_app(durable_step_execution="dispatch")
    gate = Gate()

    @durable.step
    def slow() -> str:
        gate.wait()
        return "done"

    @durable.workflow
    def flow() -> str:
        return slow()

    with run_worker(app, concurrency=2):
        try:
            handle = flow.start()
            assert gate.entered.wait(15)
            assert handle.cancel("changed my mind") is True
            with pytest.raises(WorkflowCancelled):
                handle.result(timeout=15)
        finally:
            gate.open()
    assert handle.status() == "cancelled"
    assert handle.cancel() is False  # already finished
    history = kinds(durable.history(handle.run_id))
    assert history[:4] == ["run_started", "step_scheduled", "run_cancel_requested", "run_cancelled"]
