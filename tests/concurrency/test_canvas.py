"""Durable canvas: ``durable.run_canvas(sig)`` gives what Celery's own ``sig.apply().get()``
gives, with every task call a durable step, sent to the queue Celery routes the task to."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from celery import Celery, chain, chord, group, signals
from integration.support import wait_until

from durable_celery import Durable
from durable_celery.integration.canvas import CANVAS_STEP, CANVAS_WORKFLOW
from durable_celery.replay import events as ev
from durable_celery.testing import LocalEnvironment, WorkflowTestEnvironment, replay_history
from durable_celery.testing.embedded import run_worker

from .conftest import AppFactory
from .support import outcomes_per_cid


def install_tasks(app: Celery) -> dict[str, Any]:
    @app.task(name="canvas.add", shared=False)
    def add(x: int, y: int = 0) -> int:
        return x + y

    @app.task(name="canvas.mul", shared=False)
    def mul(x: int, y: int) -> int:
        return x * y

    @app.task(name="canvas.total", shared=False)
    def total(xs: list[Any]) -> int:
        return sum(x if isinstance(x, int) else total(x) for x in xs)

    @app.task(name="canvas.const", shared=False)
    def const(value: Any) -> Any:
        return value

    @app.task(name="canvas.pair", shared=False)
    def pair(xs: list[Any]) -> list[Any]:
        return [len(xs), xs]

    return {"add": add, "mul": mul, "total": total, "const": const, "pair": pair}


Canvas = Callable[[dict[str, Any]], Any]

CANVASES: dict[str, tuple[Canvas, int]] = {
    # name: (build from the tasks, how many task calls it makes)
    "one task": (lambda t: t["add"].s(4, 5), 1),
    "chain": (lambda t: chain(t["add"].s(1, 2), t["mul"].s(10), t["add"].s(5)), 3),
    "chain with kwargs": (lambda t: chain(t["add"].s(1, y=2), t["add"].s(y=10)), 2),
    "chain with an immutable link": (
        lambda t: chain(t["add"].s(1, 2), t["const"].si(9), t["add"].s(1)),
        3,
    ),
    "group": (lambda t: group(t["add"].s(1, 1), t["mul"].s(3, 3), t["const"].si("x")), 3),
    "chord": (lambda t: chord([t["add"].s(i, i) for i in range(4)], t["total"].s()), 5),
    "chain into a group into a task": (
        lambda t: chain(t["add"].s(1, 1), group(t["mul"].s(2), t["mul"].s(3)), t["total"].s()),
        4,
    ),
    "group of chains": (
        lambda t: group(
            chain(t["add"].s(1, 2), t["mul"].s(2)),
            chain(t["const"].si(5), t["add"].s(1)),
            t["add"].s(0, 0),
        ),
        5,
    ),
    "chord in a chain": (
        lambda t: chain(
            chord([t["add"].s(1, 1), t["add"].s(2, 2)], t["total"].s()), t["mul"].s(10)
        ),
        4,
    ),
    "chord with nested chains and groups": (
        lambda t: chain(
            t["const"].si(2),
            chord(
                [chain(t["mul"].s(3), t["add"].s(1)), group(t["mul"].s(5), t["add"].s(7))],
                t["pair"].s(),
            ),
        ),
        6,
    ),
    "groups nested in a group": (
        lambda t: group(group(group(t["add"].s(1, 1)), t["add"].s(2, 2)), t["add"].s(3, 3)),
        3,
    ),
    "chain of groups": (
        lambda t: chain(
            group(t["add"].s(1, 1), t["add"].s(2, 2)), group(t["total"].s(), t["pair"].s())
        ),
        4,
    ),
}


@pytest.mark.parametrize("name", list(CANVASES))
def test_a_canvas_run_durably_gives_what_celery_gives(durable: Durable, name: str) -> None:
    build, calls = CANVASES[name]
    sig = build(install_tasks(durable.app))
    expected = sig.apply().get()

    env = LocalEnvironment(durable)
    handle = durable.run_canvas(sig)
    assert env.result(handle) == expected

    # Every task call is a durable step, in this run or in a child canvas run (nested chains).
    runs = [handle.run_id]
    steps = []
    for run_id in runs:
        history = durable.history(run_id)
        runs += [e.meta["child"] for e in history if e.kind == ev.CHILD_STARTED]
        steps += [e for e in history if e.kind == ev.STEP_SCHEDULED]
        assert all(n == 1 for n in outcomes_per_cid(history).values())
        report = replay_history(history, durable.registry, env.runtime.codec, run_id)
        assert report.matches_record is True and report.next_commands == []
    assert len(steps) == calls
    assert {e.meta["name"] for e in steps} == {CANVAS_STEP}
    assert durable.history(handle.run_id)[0].meta["workflow"] == CANVAS_WORKFLOW


def test_a_chain_resumes_where_it_stopped_without_running_a_task_twice(
    durable: Durable,
) -> None:
    runs: list[int] = []
    app = durable.app

    @app.task(name="canvas.noted", shared=False)
    def noted(x: int) -> int:
        runs.append(x)
        return x + 1

    env = LocalEnvironment(durable)
    handle = durable.run_canvas(chain(noted.s(0), noted.s(), noted.s()), run_id="pipeline-1")
    env.step_once()  # the first pass sends the first task
    env.step_once()  # it runs
    assert runs == [0]
    env.runtime.reset_process_caches()  # as if the worker died: a fresh process picks it up
    assert env.result(handle) == 3
    assert runs == [0, 1, 2]
    assert durable.run_canvas(chain(noted.s(0)), run_id="pipeline-1").created is False


def test_a_group_member_fails_the_canvas_with_its_error(durable: Durable) -> None:
    app = durable.app

    @app.task(name="canvas.broken", shared=False)
    def broken(x: int) -> int:
        raise ValueError(f"cannot handle {x}")

    tasks = install_tasks(app)
    env = WorkflowTestEnvironment(durable)
    handle = durable.run_canvas(group(tasks["add"].s(1, 1), broken.s(7)))
    for _ in range(5):  # the canvas step's retries (durable_step_retries), then the failure
        env.advance(minutes=10)
    with pytest.raises(ValueError, match="cannot handle 7"):
        env.result(handle)
    history = durable.history(handle.run_id)
    assert [e.kind for e in history if e.cid == "s2"] == [
        ev.STEP_SCHEDULED,
        *[ev.STEP_RETRYING] * 3,
        ev.STEP_FAILED,
    ]


def test_an_unregistered_task_name_says_to_import_its_module(durable: Durable) -> None:
    env = WorkflowTestEnvironment(durable)
    handle = durable.run_canvas(durable.app.signature("canvas.nowhere", (1,)))
    for _ in range(5):
        env.advance(minutes=10)
    with pytest.raises(
        LookupError, match=r"'canvas\.nowhere' is not registered.*import its module"
    ):
        env.result(handle)


@pytest.mark.timeout(30)
def test_a_chain_partly_routed_to_another_queue_sends_that_task_there(
    make_app: AppFactory, key_prefix: str
) -> None:
    reports = f"reports-{key_prefix}"
    app, durable = make_app(task_routes={"canvas.mul": {"queue": reports}})
    tasks = install_tasks(app)
    default = app.conf.task_default_queue
    routed: dict[str, str] = {}

    def note(task_id: str, task: Any, **_: Any) -> None:
        if task.name == CANVAS_STEP:
            routed[task_id] = task.request.delivery_info.get("routing_key")

    signals.task_prerun.connect(note, weak=False)
    try:
        sig = chain(tasks["add"].s(1, 2), tasks["mul"].s(10), tasks["add"].s(5))
        with run_worker(app, concurrency=2, queues=[default, reports]):
            handle = durable.run_canvas(sig)
            assert handle.result(timeout=20) == 35
            wait_until(lambda: len(routed) == 3, what="three canvas steps")
    finally:
        signals.task_prerun.disconnect(note)

    history = durable.history(handle.run_id)
    scheduled = [e for e in history if e.kind == ev.STEP_SCHEDULED]
    assert [e.meta.get("q") for e in scheduled] == [default, reports, default]
    assert [routed[f"{handle.run_id}:{e.cid}"] for e in scheduled] == [default, reports, default]
