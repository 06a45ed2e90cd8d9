"""Steps are real Celery tasks: plain calls, ``.delay()``, routing, task options and ``base=``."""

from __future__ import annotations

from typing import Any

import pytest
import redis
from celery import Task, current_task

from durable_celery import current_step
from durable_celery.integration.tasks import ORCHESTRATE_TASK
from durable_celery.testing.embedded import run_worker

from .support import AppFactory, broker_prefix, kinds, wait_until

pytestmark = pytest.mark.timeout(60)


def test_a_step_called_outside_a_workflow_is_a_plain_function_call(make_app: AppFactory) -> None:
    _, durable = make_app()
    calls: list[Any] = []

    @durable.step(retries=5)
    def double(x: int) -> int:
        calls.append(current_step())
        return 2 * x

    @durable.workflow
    def twice(x: int) -> int:
        return double(double(x))

    assert double(21) == 42
    assert twice(3) == 12  # a workflow called directly is a plain call too; no run, no Redis
    assert calls == [None, None, None]
    with pytest.raises(TypeError):
        double(1, 2)  # type: ignore[call-arg]


def test_step_task_delay_runs_the_function_as_an_ordinary_task(
    make_app: AppFactory, redis_url: str, key_prefix: str
) -> None:
    app, durable = make_app(
        result_backend=redis_url,
        result_backend_transport_options={"global_keyprefix": broker_prefix(key_prefix)},
    )

    @durable.step
    def add(a: int, b: int) -> dict[str, Any]:
        return {"sum": a + b, "durable": current_step() is not None}

    with run_worker(app, concurrency=2):
        result = add.task.delay(2, 3)
        assert result.get(timeout=10) == {"sum": 5, "durable": False}
        assert add.task.apply_async((4,), {"b": 1}).get(timeout=10) == {"sum": 5, "durable": False}


def test_step_task_options_reach_the_celery_task(make_app: AppFactory, key_prefix: str) -> None:
    _, durable = make_app()

    @durable.step(queue=f"mail-{key_prefix}", rate_limit="10/s", time_limit=30, soft_time_limit=20)
    def send(to: str) -> None: ...

    task = send.task
    assert (task.rate_limit, task.time_limit, task.soft_time_limit) == ("10/s", 30, 20)
    # The queue is not a task attribute (Celery 5.7 deprecates those): it is routed.
    assert getattr(task, "queue", None) is None
    assert durable.runtime.dispatcher.step_queue(send) == f"mail-{key_prefix}"
    # A worker killed mid-step leaves the message to be delivered again.
    assert task.acks_late is True and task.reject_on_worker_lost is True
    assert task.name == f"{__name__}.test_step_task_options_reach_the_celery_task.<locals>.send"


def test_an_unknown_step_option_is_refused_with_the_valid_ones(make_app: AppFactory) -> None:
    _, durable = make_app()
    with pytest.raises(TypeError, match="rate_limit"):

        @durable.step(rate_limt="1/s")
        def typo() -> None: ...


def test_a_dispatched_step_goes_to_its_queue(make_app: AppFactory, key_prefix: str) -> None:
    mail = f"mail-{key_prefix}"
    app, durable = make_app(durable_step_execution="dispatch")
    routes: list[tuple[str, Any]] = []

    @durable.step(queue=mail)
    def send_receipt(order: str) -> str:
        routes.append(("send_receipt", current_task.request.delivery_info.get("routing_key")))
        return f"receipt:{order}"

    @durable.step
    def reserve(order: str) -> str:
        routes.append(("reserve", current_task.request.delivery_info.get("routing_key")))
        return f"reserved:{order}"

    @durable.workflow
    def checkout(order: str) -> list[str]:
        return [reserve(order), send_receipt(order)]

    with run_worker(app, concurrency=2, queues=[app.conf.task_default_queue, mail]):
        handle = checkout.start("o-1")
        assert handle.result(timeout=15) == ["reserved:o-1", "receipt:o-1"]
    assert routes == [("reserve", app.conf.task_default_queue), ("send_receipt", mail)]


def test_task_routes_route_a_step_like_any_task(make_app: AppFactory, key_prefix: str) -> None:
    mail = f"routed-{key_prefix}"
    app, durable = make_app(durable_step_execution="dispatch")
    routes: list[Any] = []

    @durable.step(name="shop.send_receipt")
    def send_receipt(order: str) -> str:
        routes.append(current_task.request.delivery_info.get("routing_key"))
        return f"receipt:{order}"

    @durable.workflow
    def checkout(order: str) -> str:
        return send_receipt(order)

    app.conf.task_routes = {"shop.send_receipt": {"queue": mail}}
    with run_worker(app, concurrency=2, queues=[app.conf.task_default_queue, mail]):
        assert checkout.start("o-2").result(timeout=15) == "receipt:o-2"
    assert routes == [mail]


def test_auto_dispatches_a_step_routed_to_a_queue_this_worker_does_not_consume(
    make_app: AppFactory, key_prefix: str, redis_client: redis.Redis
) -> None:
    mail = f"mail-{key_prefix}"
    app, durable = make_app(durable_step_execution="auto")

    @durable.step(queue=mail)
    def send_receipt(order: str) -> str:
        return f"receipt:{order}"

    @durable.workflow
    def checkout(order: str) -> str:
        return send_receipt(order)

    queue_key = broker_prefix(key_prefix) + mail
    with run_worker(app, concurrency=2):  # consumes only the default queue
        handle = checkout.start("o-3")
        wait_until(lambda: redis_client.llen(queue_key) == 1, what="the step in its queue")
        assert handle.status() == "running"
        assert kinds(durable.history(handle.run_id)) == ["run_started", "step_scheduled"]
    with run_worker(app, concurrency=2, queues=[app.conf.task_default_queue, mail]):
        assert handle.result(timeout=15) == "receipt:o-3"
    assert kinds(durable.history(handle.run_id)) == [
        "run_started",
        "step_scheduled",
        "step_completed",
        "run_completed",
    ]


class AuditedTask(Task):  # type: ignore[misc]
    """A custom base: every task of this class notes the ids it starts."""

    started: list[str] = []

    def before_start(self, task_id: str, args: Any, kwargs: Any) -> None:
        AuditedTask.started.append(task_id)


def test_a_custom_base_task_class_is_used_for_the_step(
    make_app: AppFactory, tasks_run: list[tuple[str, str]]
) -> None:
    app, durable = make_app(durable_step_execution="dispatch")
    AuditedTask.started = []

    @durable.step(base=AuditedTask)
    def audited(x: int) -> int:
        return x + 1

    @durable.workflow
    def flow(x: int) -> int:
        return audited(x)

    assert isinstance(audited.task, AuditedTask)
    with run_worker(app, concurrency=2):
        handle = flow.start(1)
        assert handle.result(timeout=15) == 2
    cid = next(e.cid for e in durable.history(handle.run_id) if e.kind == "step_completed")
    assert AuditedTask.started == [f"{handle.run_id}:{cid}"]


def test_two_durable_apps_in_one_process_keep_their_own_tasks(make_app: AppFactory) -> None:
    first_app, first = make_app("first")

    @first.step(name="shared.name")
    def first_step() -> str:
        return "first"

    second_app, second = make_app("second", durable_step_execution="dispatch")

    @second.step(name="shared.name")
    def second_step() -> str:
        return "second"

    @second.workflow
    def flow() -> str:
        return second_step()

    # Celery's shared tasks would hand the first app's tasks (first registered wins) to the second.
    assert first_app.tasks[ORCHESTRATE_TASK] is not second_app.tasks[ORCHESTRATE_TASK]
    assert second_app.tasks["shared.name"]() == "second"
    with run_worker(second_app, concurrency=2):
        assert flow.start().result(timeout=15) == "second"
    assert first_step() == "first"


def test_durable_messages_store_no_task_results_even_when_the_app_keeps_them(
    make_app: AppFactory, key_prefix: str, redis_url: str
) -> None:
    """The outcome is in the log: a dispatched step or a pass writes nothing to the result
    backend (Celery's default, task_ignore_result=False, would store "recorded" per step)."""
    results_prefix = f"{key_prefix}:results:"
    app, durable = make_app(
        durable_step_execution="dispatch",
        result_backend=redis_url,
        result_backend_transport_options={"global_keyprefix": results_prefix},
        task_ignore_result=False,
    )

    @durable.step
    def double(x: int) -> int:
        return 2 * x

    @durable.step
    def add(x: int, y: int) -> int:
        return x + y

    @durable.workflow
    def compute(x: int) -> int:
        return add(double(x), 1)

    client = redis.Redis.from_url(redis_url)
    with run_worker(app, concurrency=2):
        assert compute.start(20).result(timeout=15) == 41
        # A plain call of the same task still stores its result, as the app asks.
        assert add.task.delay(2, 3).get(timeout=15) == 5
    stored = sorted(k.decode() for k in client.scan_iter(match=f"{results_prefix}*"))
    client.close()
    assert len(stored) == 1 and stored[0].startswith(f"{results_prefix}celery-task-meta-")
