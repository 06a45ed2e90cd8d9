"""Names to definitions: which workflows and steps this process knows."""

from __future__ import annotations

from typing import Any

from ..errors import UnknownWorkflowError
from ..workflow.definition import WorkflowDefinition
from ..workflow.step import StepDefinition

__all__ = ["Registry"]


class Registry:
    def __init__(self) -> None:
        self.workflows: dict[str, WorkflowDefinition[Any, Any]] = {}
        self.steps: dict[str, StepDefinition[Any, Any]] = {}

    def add_workflow(self, wf: WorkflowDefinition[Any, Any]) -> None:
        existing = self.workflows.get(wf.name)
        if (
            existing is not None
            and existing.fn is not wf.fn
            and _origin(existing.fn) != _origin(wf.fn)
        ):
            raise ValueError(
                f"two different functions are registered as workflow {wf.name!r}; give one of "
                "them another name with @durable.workflow(name=...)"
            )
        self.workflows[wf.name] = wf

    def add_step(self, step: StepDefinition[Any, Any]) -> None:
        existing = self.steps.get(step.name)
        if (
            existing is not None
            and existing.fn is not step.fn
            and _origin(existing.fn) != _origin(step.fn)
        ):
            raise ValueError(
                f"two different functions are registered as step {step.name!r}; give one of "
                "them another name with @durable.step(name=...)"
            )
        self.steps[step.name] = step

    def workflow(self, name: str) -> WorkflowDefinition[Any, Any]:
        try:
            return self.workflows[name]
        except KeyError:
            known = ", ".join(sorted(self.workflows)) or "none"
            raise UnknownWorkflowError(
                f"no workflow named {name!r} is registered in this process (known: {known}); "
                "import the module that defines it in the worker (Celery `include`/`imports`)"
            ) from None

    def step(self, name: str) -> StepDefinition[Any, Any]:
        try:
            return self.steps[name]
        except KeyError:
            raise UnknownWorkflowError(
                f"no step named {name!r} is registered in this process; import the module that "
                "defines it in the worker"
            ) from None


def _origin(fn: Any) -> tuple[str, str]:
    # Re-importing a module (autoreload, tests) makes a new function object for the same code.
    return (getattr(fn, "__module__", ""), getattr(fn, "__qualname__", ""))
