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


def install_router(app: Celery, durable: Durable) -> None:
    """Route plain calls of step tasks (``step.task.delay()``) to the step's queue too.

    Appended after the project's own ``task_routes``, which keep precedence.
    """

    def route_step(
        name: str, args: Any, kwargs: Any, options: Any, task: Any = None, **rest: Any
    ) -> dict[str, Any] | None:
        step = durable.registry.steps.get(name)
        return message_options(step) or None if step is not None else None

    routes = app.conf.task_routes
    if routes is None:
        app.conf.task_routes = (route_step,)
    elif isinstance(routes, (list, tuple)):
        app.conf.task_routes = (*routes, route_step)
    else:
        app.conf.task_routes = (routes, route_step)
