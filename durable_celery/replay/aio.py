"""A deterministic asyncio event loop for ``async def`` workflows.

No wall clock and no I/O: ``loop.time()`` is the log's time, ``call_later``/``call_at`` become
durable timers, and a coroutine waiting on a durable call (step, timer, event, child) waits on a
future the loop resolves from the log. Ready callbacks run in FIFO order; when none are left the
loop blocks on the replay context until the next outcome is delivered, in log order, so
``asyncio.gather``, ``asyncio.wait(..., FIRST_COMPLETED)``, ``asyncio.wait_for`` and
``asyncio.sleep`` replay exactly as they first ran.
"""

from __future__ import annotations

import asyncio
import collections
import contextvars
import itertools
from asyncio import events as aio_events
from collections.abc import Callable, Coroutine
from typing import Any

from .commands import StartTimer
from .context import Pending, ReplayContext

__all__ = ["DeterministicLoop", "run_workflow_coroutine", "running_loop_of"]


class _NoIO:
    """Any loop method not listed on DeterministicLoop: real I/O has no place in a workflow."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        raise RuntimeError(
            f"loop.{self.name}() is not available inside a durable workflow: workflows must be "
            "deterministic, so do I/O, threads and subprocesses in a step"
        )


class DeterministicLoop(asyncio.AbstractEventLoop):
    """See the module docstring. Methods asyncio needs are implemented; every other loop method
    (sockets, subprocesses, executors, signals) raises a RuntimeError that points to steps."""

    def __init__(self, ctx: ReplayContext) -> None:
        self.ctx = ctx
        self._ready: collections.deque[asyncio.Handle] = collections.deque()
        self._waiting: dict[str, list[asyncio.Future[Any]]] = {}
        self._pendings: dict[str, Pending] = {}
        self._timers: dict[str, list[asyncio.TimerHandle]] = {}
        self._order = itertools.count()
        self._closed = False
        self._running = False
        self.driving = False  # True while the loop itself (not user code) blocks on the log
        self._exception: BaseException | None = None

    # -- what asyncio needs -----------------------------------------------------------------------
    def time(self) -> float:
        return self.ctx.now_ms() / 1000

    def call_soon(  # type: ignore[override]
        self, callback: Callable[..., Any], *args: Any, context: contextvars.Context | None = None
    ) -> asyncio.Handle:
        handle = asyncio.Handle(callback, args, self, context)
        self._ready.append(handle)
        return handle

    def call_soon_threadsafe(  # type: ignore[override]
        self, *args: Any, **kwargs: Any
    ) -> asyncio.Handle:
        raise RuntimeError("threads have no place inside a durable workflow; use a step")

    def call_later(  # type: ignore[override]
        self,
        delay: float,
        callback: Callable[..., Any],
        *args: Any,
        context: contextvars.Context | None = None,
    ) -> asyncio.TimerHandle:
        return self.call_at(self.time() + delay, callback, *args, context=context)

    def call_at(  # type: ignore[override]
        self,
        when: float,
        callback: Callable[..., Any],
        *args: Any,
        context: contextvars.Context | None = None,
    ) -> asyncio.TimerHandle:
        handle = asyncio.TimerHandle(when, callback, args, self, context)
        delay = max(0.0, when - self.time())
        if delay == 0:
            self._ready.append(handle)
            return handle
        pending = self.ctx.issue(StartTimer(self.ctx.next_cid(StartTimer.prefix), seconds=delay))
        self._timers.setdefault(pending.cid, []).append(handle)
        self._pendings[pending.cid] = pending
        return handle

    def _timer_handle_cancelled(self, handle: asyncio.TimerHandle) -> None:
        """The durable timer still fires later; its callback is simply not run."""

    def create_future(self) -> asyncio.Future[Any]:
        return asyncio.Future(loop=self)

    def create_task(self, coro: Any, *, name: str | None = None, context: Any = None) -> Any:
        if context is not None:
            return asyncio.Task(coro, loop=self, name=name, context=context)  # type: ignore[call-arg]
        return asyncio.Task(coro, loop=self, name=name)

    def get_debug(self) -> bool:
        return False

    def is_running(self) -> bool:
        return self._running

    def is_closed(self) -> bool:
        return self._closed

    def close(self) -> None:
        self._closed = True

    def default_exception_handler(self, context: dict[str, Any]) -> None:
        if self._exception is None and isinstance(context.get("exception"), BaseException):
            self._exception = context["exception"]

    def call_exception_handler(self, context: dict[str, Any]) -> None:
        # Unretrieved task exceptions are reported here when tasks are garbage-collected.
        pass

    def get_exception_handler(self) -> None:
        return None

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        return _NoIO(name)

    # -- durable futures --------------------------------------------------------------------------
    def future_for(self, pending: Pending) -> asyncio.Future[Any]:
        future: asyncio.Future[Any] = self.create_future()
        if pending.done():
            self._settle(pending, future)
        else:
            self._waiting.setdefault(pending.cid, []).append(future)
            self._pendings[pending.cid] = pending
        return future

    def _settle(self, pending: Pending, future: asyncio.Future[Any]) -> None:
        if future.done():
            return  # cancelled by asyncio.wait_for / task.cancel(): the outcome is not delivered
        try:
            value = self.ctx.value(pending.cid)
        except Exception as exc:
            future.set_exception(exc)
        else:
            future.set_result(value)

    def _deliver_ready(self) -> None:
        """Resolve every waiting durable call whose outcome is delivered, in log order."""
        done = [cid for cid, p in self._pendings.items() if p.done()]
        for cid in sorted(done, key=self.ctx.position):
            pending = self._pendings.pop(cid)
            for future in self._waiting.pop(cid, ()):
                self._settle(pending, future)
            for handle in self._timers.pop(cid, ()):
                if not handle.cancelled():
                    self._ready.append(handle)

    def _has_waiters(self) -> bool:
        return any(any(not f.done() for f in futures) for futures in self._waiting.values()) or any(
            any(not h.cancelled() for h in hs) for hs in self._timers.values()
        )

    # -- running ----------------------------------------------------------------------------------
    def run(self, coro: Coroutine[Any, Any, Any]) -> Any:
        previous = aio_events._get_running_loop()
        aio_events._set_running_loop(self)
        self._running = True
        try:
            task = self.create_task(coro)
            while True:
                while self._ready:
                    handle = self._ready.popleft()
                    if not handle.cancelled():
                        handle._run()
                if task.done():
                    return task.result()
                if not self._has_waiters():
                    raise RuntimeError(
                        "the async workflow is waiting on something that is not durable (a "
                        "future nobody resolves, or an asyncio primitive fed from outside); "
                        "await steps, timers, events or child workflows only"
                    )
                self.driving = True
                try:
                    self.ctx.block_until(
                        lambda: any(p.done() for p in self._pendings.values()),
                        ("any", list(self._pendings)),
                    )
                finally:
                    self.driving = False
                self._deliver_ready()
        finally:
            self._running = False
            aio_events._set_running_loop(previous)


# AbstractEventLoop defines every I/O method (raising a bare NotImplementedError), so
# ``__getattr__`` never sees them: refuse them explicitly, with the message that says what to do.
def _refused(name: str) -> property:
    def get(self: DeterministicLoop) -> _NoIO:
        return _NoIO(name)

    return property(get)


for _name, _member in vars(asyncio.AbstractEventLoop).items():
    if not _name.startswith("_") and callable(_member) and _name not in vars(DeterministicLoop):
        setattr(DeterministicLoop, _name, _refused(_name))
del _name, _member


def run_workflow_coroutine(coro: Coroutine[Any, Any, Any], ctx: ReplayContext) -> Any:
    loop = DeterministicLoop(ctx)  # type: ignore[abstract]  # I/O methods refuse, see _NoIO
    ctx.loop = loop
    try:
        return loop.run(coro)
    finally:
        ctx.loop = None
        if (
            getattr(coro, "cr_frame", None) is not None
        ):  # suspended mid-way: close it so it cannot run later
            coro.close()


def running_loop_of(ctx: ReplayContext) -> DeterministicLoop | None:
    loop = getattr(ctx, "loop", None)
    return loop if isinstance(loop, DeterministicLoop) else None
