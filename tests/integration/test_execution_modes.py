"""A sequential workflow gives the same result and the same log in every step execution mode."""

from __future__ import annotations

from typing import Any

import pytest
from celery import current_task

from durable_celery import Durable, current_step
from durable_celery.integration.tasks import ORCHESTRATE_TASK
from durable_celery.replay import events as ev
from durable_celery.testing.embedded import run_worker

from .support import AppFactory, count_per_cid, kinds

pytestmark = pytest.mark.timeout(60)

EXPECTED = {"total": 12, "tags": ("a", "b"), "label": "order-1"}
PIPELINE = f"{__name__}.pipeline.<locals>"
STEP_NAMES = ("add", "add", "describe")


def pipeline(durable: Durable, seen: list[dict[str, Any]], **step_options: Any) -> Any:
    """Three sequential steps; each one notes which Celery task ran it."""

    def note() -> None:
        info = current_step()
        assert info is not None
        seen.append(
            {
                "cid": info.cid,
                "attempt": info.attempt,
                "key": info.idempotency_key,
                # Checked for dispatched steps only: an inline step runs in no step task.
                "task_id": current_task.request.id if current_task else None,
            }
        )

    @durable.step(**step_options.get("add", {}))
    def add(a: int, b: int) -> int:
        note()
        return a + b

    @durable.step(**step_options.get("describe", {}))
    def describe(total: int, label: str) -> dict[str, Any]:
        note()
        return {"total": total, "tags": ("a", "b"), "label": label}

    @durable.workflow
    def checkout(x: int, label: str) -> dict[str, Any]:
        total = add(x, 1)
        total = add(total, 10)
        return describe(total, label=label)

    return checkout


@pytest.mark.parametrize("mode", ["inline", "dispatch", "auto"])
def test_a_sequential_workflow_gives_the_same_result_and_log_in_every_mode(
    make_app: AppFactory, tasks_run: list[tuple[str, str]], mode: str
) -> None:
    app, durable = make_app(durable_step_execution=mode)
    seen: list[dict[str, Any]] = []
    checkout = pipeline(durable, seen)

    with run_worker(app, concurrency=4):
        handle = checkout.start(1, label="order-1")
        assert handle.result(timeout=15) == EXPECTED

    history = durable.history(handle.run_id)
    # The same calls and outcomes in every mode: a step run inline in its pass is recorded as
    # one entry (its outcome, which also records the call), a dispatched one as two.
    per_step = ["step_scheduled", "step_completed"] if mode == "dispatch" else ["step_completed"]
    assert kinds(history) == ["run_started", *per_step * 3, "run_completed"]
    fingerprint = durable.runtime.codec.fingerprint
    arguments = [((1, 1), {}), ((2, 10), {}), ((12,), {"label": "order-1"})]
    assert [(e.meta["name"], e.meta["h"]) for e in history if ev.records_call(e)] == [
        (f"{PIPELINE}.{name}", fingerprint(args))
        for name, args in zip(STEP_NAMES, arguments, strict=True)
    ]
    cids = [e.cid for e in history if e.kind == "step_completed"]
    assert count_per_cid(history) == {cid: 1 for cid in cids}
    assert [s["cid"] for s in seen] == cids
    assert all(s["attempt"] == 1 for s in seen)
    assert [s["key"] for s in seen] == [f"{handle.run_id}:{cid}" for cid in cids]
    step_tasks = [(name, tid) for name, tid in tasks_run if name != ORCHESTRATE_TASK]
    if mode == "dispatch":
        # Each step ran as its own task, with the deterministic id <run_id>:<cid>.
        ids = [f"{handle.run_id}:{cid}" for cid in cids]
        assert [s["task_id"] for s in seen] == ids
        assert [tid for _, tid in step_tasks] == ids
        assert [name for name, _ in step_tasks] == [f"{PIPELINE}.{n}" for n in STEP_NAMES]
    else:
        # inline, and auto with a worker that consumes the steps' queue: in the orchestrator.
        assert step_tasks == []


def test_a_per_step_execution_overrides_the_app_setting(
    make_app: AppFactory, tasks_run: list[tuple[str, str]]
) -> None:
    app, durable = make_app(durable_step_execution="dispatch")
    seen: list[dict[str, Any]] = []
    checkout = pipeline(durable, seen, add={"execution": "inline"})

    with run_worker(app, concurrency=4):
        handle = checkout.start(1, label="order-1")
        assert handle.result(timeout=15) == EXPECTED

    describe_id = f"{handle.run_id}:{seen[2]['cid']}"
    assert seen[2]["task_id"] == describe_id
    assert [t for t in tasks_run if t[0] != ORCHESTRATE_TASK] == [
        (f"{PIPELINE}.describe", describe_id)
    ]


def test_a_step_can_ask_to_be_dispatched_when_the_app_runs_steps_inline(
    make_app: AppFactory, tasks_run: list[tuple[str, str]]
) -> None:
    app, durable = make_app(durable_step_execution="inline")
    seen: list[dict[str, Any]] = []
    checkout = pipeline(durable, seen, describe={"execution": "dispatch"})

    with run_worker(app, concurrency=4):
        handle = checkout.start(1, label="order-1")
        assert handle.result(timeout=15) == EXPECTED

    describe_id = f"{handle.run_id}:{seen[2]['cid']}"
    assert seen[2]["task_id"] == describe_id
    assert [t for t in tasks_run if t[0] != ORCHESTRATE_TASK] == [
        (f"{PIPELINE}.describe", describe_id)
    ]
