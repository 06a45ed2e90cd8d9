"""The Celery tasks: the orchestrator (``durable_celery.orchestrate``) and one task per step.

Both use ``acks_late`` and ``reject_on_worker_lost``: a worker killed mid-task leaves the message
to be delivered again, so a step runs again (at least once) and a pass is not lost.

Both are registered with ``shared=False``: Celery's default also adds a task to every app
finalized later in the process, and these tasks close over one ``Durable``, so a second app
would run the first app's orchestrator (its store, its registry) under the same name.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..workflow.step import StepDefinition
from .content import input_from_message
from .dispatcher import DURABLE_KWARG
from .routing import MESSAGE_OPTIONS

if TYPE_CHECKING:
    from celery import Celery

    from .extension import Durable

__all__ = [
    "ORCHESTRATE_TASK",
    "register_orchestrator",
    "register_step_task",
]

ORCHESTRATE_TASK = "durable_celery.orchestrate"

RELIABLE = {"acks_late": True, "reject_on_worker_lost": True}


def register_orchestrator(app: Celery, durable: Durable) -> Any:
    @app.task(  # type: ignore[untyped-decorator]  # celery is untyped
        name=ORCHESTRATE_TASK,
        bind=True,
        ignore_result=True,
        max_retries=None,
        shared=False,
        **RELIABLE,
    )
    def orchestrate(self: Any, run_id: str) -> str:
        report = durable.runtime.orchestrator.run(run_id)
        if report.status == "busy":
            # Another pass holds the lease: if it is alive it will see everything we would;
            # if it died, its lease expires and this retry takes over.
            raise self.retry(countdown=report.retry_after)
        return report.status

    return orchestrate


def register_step_task(app: Celery, durable: Durable, step: StepDefinition[Any, Any]) -> Any:
    fn = step.fn

    def run_step(*args: Any, **kwargs: Any) -> Any:
        durable_call = kwargs.pop(DURABLE_KWARG, None)
        if durable_call is None:
            return fn(*args, **kwargs)  # a plain call: `step.task.delay(...)`
        run_id, cid, entry_id, attempt, *rest = durable_call
        payload = input_from_message(rest[0]) if rest and rest[0] is not None else None
        identity = str(rest[1]) if len(rest) > 1 else None
        request = app.current_task.request if app.current_task is not None else None
        delivery = getattr(request, "delivery_info", None) or {}
        return durable.runtime.steps.execute(
            step.name,
            run_id,
            cid,
            entry_id,
            int(attempt),
            payload=payload,
            redelivered=bool(delivery.get("redelivered")),
            identity=identity,
        )

    # Not functools.wraps: Celery checks call arguments against __wrapped__'s signature, and
    # durable messages carry the extra DURABLE_KWARG.
    for attr in ("__name__", "__qualname__", "__module__", "__doc__"):
        setattr(run_step, attr, getattr(fn, attr, None))
    # Routing options are not task attributes (Celery 5.7 deprecates those): they travel with
    # each durable message (see the dispatcher) and through the router installed by Durable.
    options = {k: v for k, v in step.task_options.items() if k not in MESSAGE_OPTIONS}
    return app.task(name=step.name, shared=False, **{**RELIABLE, **options})(run_step)
