"""At least once, recorded exactly once: duplicate step messages and racing orchestrators."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest
from celery import signals

from durable_celery import current_step
from durable_celery.integration.dispatcher import DURABLE_KWARG
from durable_celery.testing.embedded import run_worker

from .support import AppFactory, calls_per_cid, count_per_cid, kinds, wait_until

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def step_outcomes() -> Iterator[dict[str, list[Any]]]:
    """Task id -> what each execution of that task returned (``task_postrun``)."""
    seen: dict[str, list[Any]] = {}

    def record(task_id: str, retval: Any = None, **_: Any) -> None:
        seen.setdefault(task_id, []).append(retval)

    signals.task_postrun.connect(record, weak=False)
    yield seen
    signals.task_postrun.disconnect(record)


def test_a_step_message_delivered_twice_runs_twice_and_is_recorded_once(
    make_app: AppFactory, step_outcomes: dict[str, list[Any]]
) -> None:
    app, durable = make_app(durable_step_execution="dispatch")
    release = threading.Event()
    executions: list[str] = []

    @durable.step(name="shop.charge")
    def charge(cents: int) -> str:
        info = current_step()
        assert info is not None
        executions.append(info.idempotency_key)
        release.wait(15)
        return f"charged {cents}"

    @durable.workflow
    def pay(cents: int) -> str:
        return charge(cents)

    with run_worker(app, concurrency=4):
        try:
            handle = pay.start(1999)
            wait_until(lambda: executions, what="the first delivery")
            scheduled = next(
                e for e in durable.history(handle.run_id) if e.kind == "step_scheduled"
            )
            # The broker delivers the same message again while the first copy still runs.
            durable.runtime.dispatcher.send_step(
                charge, handle.run_id, scheduled.cid, scheduled.entry_id, 1
            )
            wait_until(lambda: len(executions) == 2, what="the second delivery")
        finally:
            release.set()
        assert handle.result(timeout=15) == "charged 1999"

        task_id = f"{handle.run_id}:{scheduled.cid}"
        wait_until(lambda: len(step_outcomes.get(task_id, ())) == 2, what="both deliveries")
        assert sorted(step_outcomes[task_id]) == ["duplicate", "recorded"]

        # Late copies, after the run finished: not even executed.
        args = [handle.run_id, scheduled.cid, scheduled.entry_id, 1]
        for n in range(2):
            charge.task.apply_async(kwargs={DURABLE_KWARG: args}, task_id=f"late-{n}")
        wait_until(lambda: "late-0" in step_outcomes and "late-1" in step_outcomes)
        assert step_outcomes["late-0"] == step_outcomes["late-1"] == ["duplicate"]

    assert executions == [f"{handle.run_id}:{scheduled.cid}"] * 2
    history = durable.history(handle.run_id)
    assert kinds(history) == ["run_started", "step_scheduled", "step_completed", "run_completed"]


@pytest.mark.parametrize("mode", ["inline", "dispatch"])
def test_racing_orchestrators_record_each_step_once(make_app: AppFactory, mode: str) -> None:
    app, durable = make_app(durable_step_execution=mode)
    executions: list[str] = []

    @durable.step
    def bump(x: int) -> int:
        info = current_step()
        assert info is not None
        executions.append(info.cid)
        return x + 1

    @durable.workflow
    def chain(n: int) -> int:
        x = 0
        for _ in range(n):
            x = bump(x)
        return x

    with run_worker(app, concurrency=4):
        handle = chain.start(8)
        for _ in range(12):  # redelivered and coalesced wakes: many passes race for the run
            durable.runtime.dispatcher.wake(handle.run_id)
        assert handle.result(timeout=20) == 8

    history = durable.history(handle.run_id)
    cids = sorted(set(executions))
    assert len(cids) == 8
    assert calls_per_cid(history) == dict.fromkeys(cids, 1)
    assert count_per_cid(history, "step_completed") == dict.fromkeys(cids, 1)
    assert kinds(history).count("run_completed") == 1
