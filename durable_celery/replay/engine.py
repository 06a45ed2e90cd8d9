"""One replay of a workflow function against its log.

Two ways to wait, one engine:

* **unwind** (always available): when the workflow must wait, a :class:`Suspension` unwinds its
  stack; the next wake replays it from the top, answering recorded calls from the log.
* **park** (``live=True``, needs greenlet): the workflow runs in a greenlet that switches back to
  the caller when it must wait; the next wake resumes it with only the new entries. A parked
  execution is only ever resumed in the thread that created it (greenlets cannot cross threads).
"""

from __future__ import annotations

import inspect
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from ..errors import NondeterminismError, Suspension
from . import events as ev
from .aio import run_workflow_coroutine
from .context import Diverged, Host, HostFault, ReplayContext, reset_context, set_context

try:  # greenlet is a dependency, but the engine works without it (unwind only)
    import greenlet as _greenlet
except ImportError:  # pragma: no cover - exercised only where greenlet is missing
    _greenlet = None

__all__ = ["PassResult", "WorkflowExecution", "live_supported"]

#: ``fault``: the host could not read the log (e.g. a missing key); nothing may be recorded.
Status = Literal["completed", "failed", "suspended", "blocked", "fault"]


@dataclass
class PassResult:
    status: Status
    value: Any = None
    error: BaseException | None = None

    @property
    def finished(self) -> bool:
        return self.status in ("completed", "failed")


class _Parked:
    """Sentinel a parked greenlet hands back to its driver."""


_PARKED = _Parked()
_ABANDON: list[ev.Event] = []


def live_supported() -> bool:
    return _greenlet is not None


class WorkflowExecution:
    """Drives one workflow function; ``start()`` then, when parked, ``resume(new_events)``."""

    def __init__(
        self,
        fn: Callable[..., Any],
        args: Sequence[Any],
        kwargs: dict[str, Any],
        *,
        run_id: str,
        workflow: str,
        history: Sequence[ev.Event],
        host: Host,
        live: bool = False,
    ) -> None:
        self.fn = fn
        self.args = tuple(args)
        self.kwargs = dict(kwargs)
        self.live = live and _greenlet is not None
        self.ctx = ReplayContext(
            run_id, workflow, history, host, park=self._park if self.live else None
        )
        self._glet: Any = None
        self._thread = threading.get_ident()
        self.parked = False

    # -- driving ----------------------------------------------------------------------------------
    def start(self) -> PassResult:
        if not self.live:
            return self._body()
        self._glet = _greenlet.greenlet(self._body)
        return self._settle(self._glet.switch())

    def can_resume(self) -> bool:
        return self.parked and self._thread == threading.get_ident() and not self._glet.dead

    def resume(self, host: Host, new_events: Sequence[ev.Event]) -> PassResult:
        """Continue a parked execution with the entries appended since it parked."""
        assert self.can_resume(), "resume() on an execution that is not parked in this thread"
        self.ctx.host = host
        self.parked = False
        return self._settle(self._glet.switch(list(new_events)))

    def abandon(self) -> None:
        """Drop a parked execution; its stack unwinds (``finally`` blocks run) where possible."""
        if self.parked and self._thread == threading.get_ident() and not self._glet.dead:
            self.parked = False
            self._glet.switch(_ABANDON)
        self._glet = None

    def _settle(self, outcome: PassResult | _Parked) -> PassResult:
        if isinstance(outcome, _Parked):
            self.parked = True
            return PassResult("suspended")
        return outcome

    def _park(self) -> Sequence[ev.Event]:
        new = self._glet.parent.switch(_PARKED)
        if new is _ABANDON:
            self.ctx.suspended = True
            raise Suspension()
        return new  # type: ignore[no-any-return]

    # -- the workflow body ------------------------------------------------------------------------
    def _body(self) -> PassResult:
        ctx = self.ctx
        token = set_context(ctx)
        try:
            value = self.fn(*self.args, **self.kwargs)
            if inspect.iscoroutine(value):
                value = run_workflow_coroutine(value, ctx)
        except Diverged as signal:
            return PassResult("blocked", error=signal.error)
        except HostFault as fault:
            return PassResult("fault", error=fault.error)
        except Suspension:
            return self._interrupted() or PassResult("suspended")
        except Exception as exc:  # the workflow failed (or swallowed a signal, then raised)
            return self._interrupted() or PassResult("failed", error=exc)
        finally:
            reset_context(token)
        interrupted = self._interrupted()
        if interrupted is not None:
            return interrupted
        missing = ctx.unconsumed()
        if missing:
            names = ", ".join(f"{e.cid} ({e.meta.get('name', e.kind)})" for e in missing[:5])
            error = NondeterminismError(
                f"workflow {ctx.workflow!r} (run {ctx.run_id}) is not deterministic: it returned "
                f"without making calls the log recorded: {names}. Restore those calls or guard "
                "the change with patched(); then resume the run."
            )
            return PassResult("blocked", error=error)
        leftover = ctx.take_commands()
        if leftover:  # fire-and-forget calls made just before returning
            ctx.host.on_blocked(leftover)
        return PassResult("completed", value=value)

    def _interrupted(self) -> PassResult | None:
        if self.ctx.fault is not None:
            return PassResult("fault", error=self.ctx.fault)
        if self.ctx.diverged is not None:
            return PassResult("blocked", error=self.ctx.diverged)
        if self.ctx.suspended:
            return PassResult("suspended")
        return None
