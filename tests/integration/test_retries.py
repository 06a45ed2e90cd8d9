"""Step retries on a real worker: durable timers in Redis, fired by the worker's bootstep."""

from __future__ import annotations

from typing import Any

import pytest

from durable_celery import FatalError, RetryableError, StepError, current_step
from durable_celery.integration.tasks import ORCHESTRATE_TASK
from durable_celery.testing.embedded import run_worker

from .support import AppFactory, count_per_cid, kinds

pytestmark = pytest.mark.timeout(60)


class PickyError(Exception):
    """Cannot be rebuilt from its message alone: ``PickyError(message)`` is a TypeError."""

    def __init__(self, code: int, detail: str) -> None:
        super().__init__(f"{code}: {detail}")


@pytest.mark.parametrize("mode", ["inline", "dispatch"])
def test_a_step_that_fails_twice_then_succeeds_completes(
    make_app: AppFactory, tasks_run: list[tuple[str, str]], mode: str
) -> None:
    app, durable = make_app(durable_step_execution=mode)
    attempts: list[int] = []

    @durable.step(retries=3, backoff=0.05)
    def flaky(x: int) -> int:
        info = current_step()
        assert info is not None
        attempts.append(info.attempt)
        if info.attempt < 3:
            raise ConnectionError(f"attempt {info.attempt} failed")
        return x * 10

    @durable.workflow
    def flow(x: int) -> int:
        return flaky(x) + 1

    with run_worker(app, concurrency=4):
        handle = flow.start(4)
        assert handle.result(timeout=15) == 41

    history = durable.history(handle.run_id)
    assert attempts == [1, 2, 3]
    assert kinds(history) == [
        "run_started",
        "step_scheduled",
        "step_retrying",
        "step_retrying",
        "step_completed",
        "run_completed",
    ]
    retrying = [e for e in history if e.kind == "step_retrying"]
    assert [e.meta["attempt"] for e in retrying] == [1, 2]
    assert all(e.meta["error"] == "builtins.ConnectionError" for e in retrying)
    cid = retrying[0].cid
    # Retries are dispatched by the timer bootstep with ids <run_id>:<cid>:<attempt>.
    step_ids = [tid for name, tid in tasks_run if name != ORCHESTRATE_TASK]
    first = [f"{handle.run_id}:{cid}"] if mode == "dispatch" else []
    assert step_ids == [*first, f"{handle.run_id}:{cid}:2", f"{handle.run_id}:{cid}:3"]


def test_retryable_error_after_sets_the_retry_delay(make_app: AppFactory) -> None:
    app, durable = make_app(durable_step_execution="dispatch")

    @durable.step(retries=2, backoff=30.0)  # the step's own backoff would outlast the test
    def rate_limited() -> str:
        info = current_step()
        assert info is not None
        if info.attempt == 1:
            raise RetryableError("429 from the API", after=0.1)
        return "ok"

    @durable.workflow
    def flow() -> str:
        return rate_limited()

    with run_worker(app, concurrency=2):
        handle = flow.start()
        assert handle.result(timeout=15) == "ok"
    (retrying,) = [e for e in durable.history(handle.run_id) if e.kind == "step_retrying"]
    assert retrying.meta["delay"] == 0.1


@pytest.mark.parametrize("mode", ["inline", "dispatch"])
def test_a_step_that_exhausts_its_retries_fails_the_run_with_the_original_error(
    make_app: AppFactory, mode: str
) -> None:
    app, durable = make_app(durable_step_execution=mode)
    attempts: list[int] = []

    @durable.step(retries=2, backoff=0.02)
    def broken(sku: str) -> None:
        info = current_step()
        assert info is not None
        attempts.append(info.attempt)
        raise ValueError(f"no stock for {sku}")

    @durable.workflow
    def flow(sku: str) -> None:
        broken(sku)

    with run_worker(app, concurrency=4):
        handle = flow.start("sku-9")
        with pytest.raises(ValueError, match="no stock for sku-9"):
            handle.result(timeout=15)
    assert handle.status() == "failed"
    assert attempts == [1, 2, 3]
    history = durable.history(handle.run_id)
    assert kinds(history) == [
        "run_started",
        "step_scheduled",
        "step_retrying",
        "step_retrying",
        "step_failed",
        "run_failed",
    ]
    assert count_per_cid(history, "step_failed") == {history[1].cid: 1}


def test_an_error_that_cannot_be_rebuilt_arrives_as_step_error(make_app: AppFactory) -> None:
    app, durable = make_app(durable_step_execution="dispatch")

    @durable.step(retries=0)
    def picky() -> None:
        raise PickyError(7, "gateway said no")

    @durable.workflow
    def flow() -> None:
        picky()

    with run_worker(app, concurrency=2):
        handle = flow.start()
        with pytest.raises(StepError) as caught:
            handle.result(timeout=15)
    assert caught.value.type_name == f"{__name__}.PickyError"
    assert caught.value.message == "7: gateway said no"
    assert "gateway said no" in caught.value.traceback


@pytest.mark.parametrize("mode", ["inline", "dispatch"])
def test_fatal_error_fails_at_once_without_retrying(make_app: AppFactory, mode: str) -> None:
    app, durable = make_app(durable_step_execution=mode)
    attempts: list[Any] = []

    @durable.step(retries=5, backoff=0.01)
    def charge(cents: int) -> None:
        attempts.append(cents)
        raise FatalError("card declined")

    @durable.workflow
    def flow() -> None:
        charge(1999)

    with run_worker(app, concurrency=2):
        handle = flow.start()
        with pytest.raises(FatalError, match="card declined"):
            handle.result(timeout=15)
    assert attempts == [1999]
    # A step that failed inline, in its pass, is one entry; a dispatched one, two.
    scheduling = ["step_scheduled"] if mode == "dispatch" else []
    assert kinds(durable.history(handle.run_id)) == [
        "run_started",
        *scheduling,
        "step_failed",
        "run_failed",
    ]


def test_a_workflow_that_catches_a_failed_step_carries_on(make_app: AppFactory) -> None:
    app, durable = make_app(durable_step_execution="dispatch")

    @durable.step(retries=0)
    def primary() -> str:
        raise KeyError("primary down")

    @durable.step
    def fallback() -> str:
        return "fallback"

    @durable.workflow
    def flow() -> str:
        try:
            return primary()
        except KeyError:
            return fallback()

    with run_worker(app, concurrency=2):
        assert flow.start().result(timeout=15) == "fallback"
