"""Durable canvas: run an existing Celery ``chain``/``group``/``chord`` as a durable workflow.

The signature is turned into a plain spec (task names, arguments, structure) and run by the
built-in workflow ``durable_celery.canvas``: a chain becomes sequential steps (each result passed
on as the next task's first argument, unless the signature is immutable), a group becomes a fan-out
(members that are themselves chains or groups run as child canvas workflows), a chord a fan-out
followed by its body. Every task call is a durable step (``durable_celery.canvas.task``) sent to
the queue Celery's router gives that task, so existing routing keeps working, and a pipeline
killed half-way resumes where it stopped.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..workflow.concurrency import gather
from ..workflow.handle import RunHandle

if TYPE_CHECKING:
    from .extension import Durable

__all__ = ["install_canvas", "signature_spec", "CANVAS_WORKFLOW", "CANVAS_STEP"]

CANVAS_WORKFLOW = "durable_celery.canvas"
CANVAS_STEP = "durable_celery.canvas.task"
_NOTHING = object()


def signature_spec(sig: Any) -> dict[str, Any]:
    """The parts of a Celery signature that decide what runs: names, arguments, structure."""
    sig = dict(sig)
    kind = sig.get("subtask_type")
    if kind == "chain":
        return {"type": kind, "tasks": [signature_spec(t) for t in sig["kwargs"]["tasks"]]}
    if kind == "group":
        return {"type": kind, "tasks": _unrolled(sig["kwargs"]["tasks"])}
    if kind == "chord":
        header = sig["kwargs"]["header"]
        header_tasks = (
            header["kwargs"]["tasks"]
            if isinstance(header, dict) and header.get("subtask_type") == "group"
            else header
        )
        return {
            "type": "chord",
            "tasks": _unrolled(header_tasks),
            "body": signature_spec(sig["kwargs"]["body"]),
        }
    if kind is not None:
        raise TypeError(f"run_canvas() does not support {kind!r} signatures")
    return {
        "type": "task",
        "task": sig["task"],
        "args": list(sig.get("args") or ()),
        "kwargs": dict(sig.get("kwargs") or {}),
        "immutable": bool(sig.get("immutable")),
    }


def _unrolled(members: Any) -> list[dict[str, Any]]:
    """Specs of a group's members, with nested groups unrolled into it, as Celery does: all
    their tasks run in parallel and their results come back as one flat list."""
    specs: list[dict[str, Any]] = []
    for member in members:
        spec = signature_spec(member)
        specs.extend(spec["tasks"] if spec["type"] == "group" else [spec])
    return specs


def install_canvas(durable: Durable) -> None:
    app = durable.app

    def route(args: tuple[Any, ...], kwargs: dict[str, Any]) -> str | None:
        task = app.tasks.get(args[0])
        # A task class may still carry a (deprecated) queue attribute: honour it, as Celery does.
        queue_attr = getattr(task, "queue", None) if task is not None else None
        options = {"queue": queue_attr} if queue_attr else {}
        queue = app.amqp.router.route(options, args[0], (), {}).get("queue")
        return getattr(queue, "name", None)

    # Dispatched, never inlined: each task goes to the queue Celery routes it to, as before.
    @durable.step(name=CANVAS_STEP, execution="dispatch")
    def run_task(task_name: str, args: list[Any], kwargs: dict[str, Any]) -> Any:
        try:
            task = app.tasks[task_name]
        except KeyError:
            raise LookupError(
                f"task {task_name!r} is not registered in this worker; import its module"
            ) from None
        return task(*args, **kwargs)

    run_task.route = route

    def call(spec: dict[str, Any], previous: Any) -> Any:
        return start(spec, previous).result()

    def start(spec: dict[str, Any], previous: Any) -> Any:
        """A deferred call (step or child canvas run) for ``spec``."""
        if spec["type"] == "task":
            args = list(spec["args"])
            if previous is not _NOTHING and not spec["immutable"]:
                args.insert(0, previous)
            return run_task.defer(spec["task"], args, spec["kwargs"])
        return canvas.start(spec, [] if previous is _NOTHING else [previous])

    def pending(handle: Any) -> Any:
        return getattr(handle, "pending", handle)

    def run(spec: dict[str, Any], previous: Any) -> Any:
        kind = spec["type"]
        if kind == "task":
            return call(spec, previous)
        if kind == "chain":
            value = previous
            for member in spec["tasks"]:
                value = run(member, value)
            return value
        results = gather(*(pending(start(member, previous)) for member in spec["tasks"]))
        if kind == "group":
            return results
        return run(spec["body"], results)  # chord

    @durable.workflow(name=CANVAS_WORKFLOW)
    def canvas(spec: dict[str, Any], previous: list[Any]) -> Any:
        return run(spec, previous[0] if previous else _NOTHING)

    durable.canvas_workflow = canvas


def run_canvas(durable: Durable, sig: Any, run_id: str | None = None) -> RunHandle:
    return durable.canvas_workflow.start(signature_spec(sig), [], run_id=run_id)  # type: ignore[no-any-return]
