"""``@durable.workflow``: a plain function whose run is durable."""

from __future__ import annotations

import hashlib
import inspect
from collections.abc import Callable
from typing import Any, Generic, ParamSpec, Protocol, TypeVar

from ..errors import WorkflowArgumentsError
from ..replay.commands import StartChild
from ..replay.context import Pending, current_context
from .handle import RunHandle

__all__ = ["ChildHandle", "WorkflowDefinition", "Starter", "code_hash"]

P = ParamSpec("P")
R = TypeVar("R")


class Starter(Protocol):
    """What a workflow needs to start runs (implemented by the runtime client)."""

    def start_run(
        self,
        workflow: WorkflowDefinition[Any, Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        run_id: str | None,
    ) -> RunHandle: ...


class WorkflowDefinition(Generic[P, R]):
    """A registered workflow: ``wf.start(...)`` begins a durable run; ``wf(...)`` outside a
    workflow runs it as a plain function (its steps become plain calls)."""

    def __init__(self, fn: Callable[P, R], *, name: str, starter: Starter | None = None) -> None:
        self.fn = fn
        self.name = name
        self.signature = inspect.signature(fn)
        self.code_hash = code_hash(fn)
        self._starter = starter
        self.__doc__ = fn.__doc__
        self.__name__ = getattr(fn, "__name__", name)
        self.__qualname__ = getattr(fn, "__qualname__", name)
        self.__module__ = getattr(fn, "__module__", __name__)
        self.__wrapped__ = fn

    def bind(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        """Refuse arguments that do not fit the signature, before anything is written."""
        try:
            self.signature.bind(*args, **kwargs)
        except TypeError as exc:
            raise WorkflowArgumentsError(
                f"workflow {self.name!r} cannot start with these arguments: {exc}; its "
                f"signature is {self.name}{self.signature}"
            ) from None

    def start(  # run_id/detached are ours, the rest the workflow's (no ParamSpec can say so)
        self, *args: Any, run_id: str | None = None, detached: bool = False, **kwargs: Any
    ) -> Any:
        """Start a run (or return the existing run with this ``run_id``) -> :class:`RunHandle`.

        Inside a workflow this starts a *child* run and returns a :class:`ChildHandle`; its
        ``result()`` suspends the parent durably until the child finishes. Cancelling the parent
        cancels the child unless it was started with ``detached=True``.
        """
        ctx = current_context()
        if ctx is not None:
            return self._start_child(ctx, args, kwargs, run_id, detached)
        if detached:
            raise TypeError("detached=True only applies to child workflows (inside a workflow)")
        if self._starter is None:
            raise RuntimeError(
                f"workflow {self.name!r} is not attached to a Durable app; decorate it with "
                "@durable.workflow"
            )
        return self._starter.start_run(self, tuple(args), dict(kwargs), run_id)

    def _start_child(
        self,
        ctx: Any,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        run_id: str | None,
        detached: bool,
    ) -> ChildHandle:
        self.bind(args, kwargs)
        ctx.host.fingerprint((args, kwargs), f"{self.name}(...)")  # refuse unencodable at once
        cid = ctx.next_cid(StartChild.prefix)
        child_id = run_id or f"{ctx.run_id}.{cid}"
        pending = ctx.issue(
            StartChild(
                cid,
                workflow=self.name,
                child_run_id=child_id,
                args=args,
                kwargs=kwargs,
                detached=detached,
            )
        )
        return ChildHandle(child_id, self.name, pending)

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        if current_context() is not None:
            raise RuntimeError(
                f"calling workflow {self.name!r} inside another workflow is not supported; "
                "start it as a child workflow instead"
            )
        return self.fn(*args, **kwargs)

    def __repr__(self) -> str:
        return f"<durable workflow {self.name}>"


class ChildHandle:
    """A child run started inside a workflow."""

    __slots__ = ("_pending", "run_id", "workflow")

    def __init__(self, run_id: str, workflow: str, pending: Pending) -> None:
        self.run_id = run_id
        self.workflow = workflow
        self._pending = pending

    def result(self) -> Any:
        """Suspend until the child finishes; return its value or raise its error.

        In an async workflow, ``await handle.result()`` (or ``await handle``).
        """
        if self._pending.ctx.loop is not None:
            return self._pending
        return self._pending.result()

    def __await__(self) -> Any:
        return self._pending.__await__()

    def done(self) -> bool:
        return self._pending.done()

    @property
    def pending(self) -> Pending:
        """The child's completion, to pass to ``gather``/``first``/``wait``."""
        return self._pending

    def __repr__(self) -> str:
        return f"<ChildHandle {self.workflow} {self.run_id}>"


def code_hash(fn: Callable[..., Any]) -> str:
    """Identity of the workflow's code: same source, same hash (logged when replay code differs)."""
    try:
        source = inspect.getsource(fn)
    except (OSError, TypeError):
        source = getattr(getattr(fn, "__code__", None), "co_code", b"").hex()
    return hashlib.blake2b(source.encode(), digest_size=8).hexdigest()
