"""The runtime's dispatcher, with Celery: step attempts and orchestrator passes as task messages.

Messages carry ids (run id, correlation id, entry id, attempt) and, for a step sent before its
scheduling is recorded, its input as stored in the log (encoded, encrypted when keys are set:
bytes in a msgpack message, base64 text in a JSON one, see ``integration.content``) and the
identity of its call. Other payloads stay in Redis. This departs from DESIGN.md section 8 ("task
messages carry ids only") for inputs up to ``durable_message_input_limit`` bytes: reading the
input was one of five Redis round trips per dispatched step, and sending first lets the pass
finish in its append (see ``runtime.host``). ``durable_message_input_limit = 0`` restores
ids-only messages.
Step task ids are deterministic (``<run_id>:<cid>``, then ``:<attempt>`` for retries), so Flower
shows which run a task belongs to.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from kombu.utils.uuid import uuid

from ..workflow.step import StepDefinition
from .content import BINARY_SERIALIZER, input_argument, sends_binary
from .publish import TaskPublisher
from .routing import message_options

if TYPE_CHECKING:
    from celery import Celery

__all__ = ["CeleryDispatcher", "DURABLE_KWARG"]

#: The keyword that marks a step task message as a durable execution (not a plain call).
DURABLE_KWARG = "__durable__"


class CeleryDispatcher:
    #: Step messages can carry their input (see :meth:`send_step`).
    carries_input = True

    def __init__(self, app: Celery, orchestrate_task: Any, orchestrator_queue: str | None) -> None:
        self.app = app
        self.orchestrate_task = orchestrate_task
        self.orchestrator_queue = orchestrator_queue
        self.publisher = TaskPublisher(app)

    def send_step(
        self,
        step: StepDefinition[Any, Any],
        run_id: str,
        cid: str,
        entry_id: str,
        attempt: int,
        queue: str | None = None,
        payload: bytes | None = None,
        identity: str | None = None,
    ) -> None:
        """``payload``: the step's encoded input, sent with the message (``entry_id`` is then
        "" and ``identity`` names the call: the step runs without reading the log)."""
        task_id = f"{run_id}:{cid}" if attempt == 1 else f"{run_id}:{cid}:{attempt}"
        options = message_options(step)
        if queue:
            options["queue"] = queue
        call: list[Any] = [run_id, cid, entry_id, attempt]
        if payload is not None:
            binary = sends_binary(self.app, getattr(step.task, "serializer", None))
            if binary:
                options["serializer"] = BINARY_SERIALIZER
            call += [input_argument(payload, binary), identity or ""]
        self._send(
            step.task,
            kwargs={DURABLE_KWARG: call},
            task_id=task_id,
            # Given, Celery skips its saferepr of the arguments (a tenth of a publish's cost);
            # this is also what Flower and the worker log show for the task.
            argsrepr="()",
            kwargsrepr=f"{{run: {run_id}, step: {cid}, attempt: {attempt}}}",
            **options,
        )

    def _send(
        self,
        task: Any,
        *,
        task_id: str | None = None,
        args: tuple[Any, ...] = (),
        kwargs: dict[str, Any] | None = None,
        argsrepr: str,
        kwargsrepr: str = "{}",
        **options: Any,
    ) -> None:
        """Publish with Celery's message builder and sender (see ``integration.publish``):
        Celery's routing, signals and retry policy, without what a call from user code needs.
        The outcome is in the log, so no result is stored or subscribed to, and no AsyncResult
        is added to the task running now (a step continuing its run would collect one per
        step). Under ``task_always_eager``, the task's own ``apply_async`` runs it in place, as
        that setting asks."""
        kwargs = kwargs or {}
        if self.app.conf.task_always_eager:
            task.apply_async(
                args=args,
                kwargs=kwargs,
                task_id=task_id,
                argsrepr=argsrepr,
                kwargsrepr=kwargsrepr,
                **options,
            )
            return
        self.publisher.send(task, task_id or uuid(), args, kwargs, argsrepr, kwargsrepr, options)

    def revoke(self, task_ids: list[str]) -> None:
        if task_ids:
            self.app.control.revoke(task_ids)

    def wake(self, run_id: str, countdown: float | None = None) -> None:
        options: dict[str, Any] = {}
        if self.orchestrator_queue:
            options["queue"] = self.orchestrator_queue
        if countdown:
            options["countdown"] = countdown
        self._send(self.orchestrate_task, args=(run_id,), argsrepr=repr((run_id,)), **options)

    def consumes(self, step: StepDefinition[Any, Any]) -> bool:
        consumed = self.app.amqp.queues.consume_from or self.app.amqp.queues
        return self.step_queue(step) in consumed

    def step_queue(self, step: StepDefinition[Any, Any]) -> str:
        route = self.app.amqp.router.route(message_options(step), step.task.name, (), {})
        queue = route.get("queue")
        return str(getattr(queue, "name", queue or self.app.conf.task_default_queue))
