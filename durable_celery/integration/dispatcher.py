"""The runtime's dispatcher, with Celery: step attempts and orchestrator passes as task messages.

Messages carry ids only (run id, correlation id, entry id, attempt); payloads stay in Redis.
Step task ids are deterministic (``<run_id>:<cid>``, then ``:<attempt>`` for retries), so Flower
shows which run a task belongs to.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..workflow.step import StepDefinition
from .routing import message_options

if TYPE_CHECKING:
    from celery import Celery

__all__ = ["CeleryDispatcher", "DURABLE_KWARG"]

#: The keyword that marks a step task message as a durable execution (not a plain call).
DURABLE_KWARG = "__durable__"


class CeleryDispatcher:
    def __init__(self, app: Celery, orchestrate_task: Any, orchestrator_queue: str | None) -> None:
        self.app = app
        self.orchestrate_task = orchestrate_task
        self.orchestrator_queue = orchestrator_queue

    def send_step(
        self,
        step: StepDefinition[Any, Any],
        run_id: str,
        cid: str,
        entry_id: str,
        attempt: int,
        queue: str | None = None,
    ) -> None:
        task_id = f"{run_id}:{cid}" if attempt == 1 else f"{run_id}:{cid}:{attempt}"
        options = message_options(step)
        if queue:
            options["queue"] = queue
        step.task.apply_async(
            kwargs={DURABLE_KWARG: [run_id, cid, entry_id, attempt]}, task_id=task_id, **options
        )

    def revoke(self, task_ids: list[str]) -> None:
        if task_ids:
            self.app.control.revoke(task_ids)

    def wake(self, run_id: str, countdown: float | None = None) -> None:
        options: dict[str, Any] = {}
        if self.orchestrator_queue:
            options["queue"] = self.orchestrator_queue
        if countdown:
            options["countdown"] = countdown
        self.orchestrate_task.apply_async((run_id,), **options)

    def consumes(self, step: StepDefinition[Any, Any]) -> bool:
        consumed = self.app.amqp.queues.consume_from or self.app.amqp.queues
        return self.step_queue(step) in consumed

    def step_queue(self, step: StepDefinition[Any, Any]) -> str:
        route = self.app.amqp.router.route(message_options(step), step.task.name, (), {})
        queue = route.get("queue")
        return str(getattr(queue, "name", queue or self.app.conf.task_default_queue))
