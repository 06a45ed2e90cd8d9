"""Where step messages go: per-message routing options and a router for plain calls.

Celery 5.7 deprecates routing attributes on task classes (``queue``, ``priority``...), so a
step's routing travels with each durable message, and a router appended to ``task_routes`` sends
plain calls of a step's task (``step.task.delay()``) to the same queue.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..workflow.step import StepDefinition

if TYPE_CHECKING:
    from celery import Celery

    from .extension import Durable

__all__ = ["MESSAGE_OPTIONS", "install_router", "message_options"]

#: Step options sent with each message instead of being set on the task class.
MESSAGE_OPTIONS = ("priority", "routing_key", "exchange")


def message_options(step: StepDefinition[Any, Any]) -> dict[str, Any]:
    options = {k: step.task_options[k] for k in MESSAGE_OPTIONS if k in step.task_options}
    if step.queue:
        options["queue"] = step.queue
    return options


class StepRouter:
    """Celery router: a step's task goes to the step's queue, with its routing options."""

    def __init__(self, durable: Durable) -> None:
        self.durable = durable

    def __call__(
        self, name: str, args: Any, kwargs: Any, options: Any, task: Any = None, **rest: Any
    ) -> dict[str, Any] | None:
        step = self.durable.registry.steps.get(name)
        return message_options(step) or None if step is not None else None


def install_router(app: Celery, durable: Durable) -> None:
    """Route plain calls of step tasks (``step.task.delay()``) to the step's queue too.

    Appended after the project's own ``task_routes``, which keep precedence; once per loaded
    configuration (called again when Celery reloads it, which drops the earlier change).
    """
    routes = app.conf.task_routes
    listed = routes if isinstance(routes, (list, tuple)) else () if routes is None else (routes,)
    if any(isinstance(r, StepRouter) and r.durable is durable for r in listed):
        return
    app.conf.task_routes = (*listed, StepRouter(durable))
    amqp = app.__dict__.get("amqp")
    if amqp is not None:  # Celery prepares the routing table once: prepare it again
        amqp.flush_routes()
        amqp.__dict__.pop("router", None)
