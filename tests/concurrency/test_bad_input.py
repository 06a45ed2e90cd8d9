"""Misuse gets a clear error saying what to do: values that are not deferred calls, awaits off
the workflow's loop, blocking calls in async workflows, real I/O or threads in a workflow."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest

from durable_celery import (
    Durable,
    first,
    gather,
    receive,
    sleep,
    wait,
    wait_for_event,
)
from durable_celery.errors import NotInWorkflowError
from durable_celery.replay.context import Pending
from durable_celery.testing import LocalEnvironment, WorkflowTestEnvironment

from .support import of_kind

AWAIT_INSTEAD = r"blocking durable call was made inside an async workflow; await instead"


@pytest.fixture
def inc(durable: Durable) -> Any:
    @durable.step
    def inc(x: int) -> int:
        return x + 1

    return inc


@pytest.mark.parametrize(
    ("api", "call", "where"),
    [
        ("gather", lambda inc: gather(inc.defer(1), 2), "argument 1 is int"),
        ("first", lambda inc: first(inc.defer(1), inc.defer(2), "x"), "argument 2 is str"),
        ("wait", lambda inc: wait([3, inc.defer(1)]), "argument 0 is int"),
        ("map-like", lambda inc: gather(*[inc(1)]), "argument 0 is int"),  # step(...), not defer
    ],
)
def test_passing_something_that_is_not_a_deferred_call_is_refused_with_what_to_pass(
    durable: Durable, inc: Any, api: str, call: Callable[[Any], Any], where: str
) -> None:
    @durable.workflow(name=f"bad.{api}")
    def wf() -> Any:
        return call(inc)

    env = LocalEnvironment(durable, step_execution="inline")
    handle = wf.start()
    with pytest.raises(TypeError, match=rf"{where}, not a deferred call: pass step\.defer"):
        env.result(handle)
    assert handle.status() == "failed"


def test_a_child_handle_stands_for_its_completion_in_gather(durable: Durable) -> None:
    @durable.workflow
    def child(n: int) -> int:
        return n * 10

    @durable.workflow
    def parent() -> Any:
        return gather(child.start(1), child.start(2))

    assert LocalEnvironment(durable).result(parent.start()) == [10, 20]


def test_first_of_nothing_is_refused(durable: Durable) -> None:
    @durable.workflow
    def wf() -> Any:
        return first()

    with pytest.raises(ValueError, match="at least one deferred call"):
        LocalEnvironment(durable).result(wf.start())


def test_concurrency_helpers_outside_a_workflow_say_where_they_belong() -> None:
    for call in (gather, first, lambda: wait([])):
        with pytest.raises(NotInWorkflowError, match=r"inside a running @durable\.workflow"):
            call()


def test_awaiting_a_durable_call_in_a_sync_workflow_is_refused(durable: Durable, inc: Any) -> None:
    async def await_it(pending: Pending) -> Any:
        return await pending

    @durable.workflow
    def wf() -> Any:
        return asyncio.run(await_it(inc.defer(1)))  # a private loop: not the workflow's

    with pytest.raises(RuntimeError, match=r"only be awaited inside an async @durable\.workflow"):
        LocalEnvironment(durable, step_execution="dispatch").result(wf.start())


def test_a_durable_call_smuggled_out_of_its_workflow_cannot_be_awaited_elsewhere(
    durable: Durable, inc: Any
) -> None:
    leaked: list[Any] = []

    @durable.workflow
    def child() -> int:
        return 1

    @durable.workflow
    async def wf() -> int:
        leaked.append(inc.defer(1))
        leaked.append(child.start())
        return await leaked[0]

    env = LocalEnvironment(durable, step_execution="dispatch")
    assert env.result(wf.start()) == 2

    async def await_it(awaitable: Any) -> Any:
        return await awaitable

    for awaitable in leaked:  # a Pending, a ChildHandle: on a loop that is not the workflow's
        with pytest.raises(RuntimeError, match="on the workflow's own loop"):
            asyncio.run(await_it(awaitable))


BLOCKING_CALLS: dict[str, Callable[[Durable, Any], Any]] = {
    "gather": lambda durable, inc: gather(inc.defer(1)),
    "first": lambda durable, inc: first(inc.defer(1)),
    "wait": lambda durable, inc: wait([inc.defer(1)]),
    "wait-timeout": lambda durable, inc: wait([inc.defer(1)], timeout=5),
    "result": lambda durable, inc: inc.defer(1).result(),
}


def test_durable_map_in_an_async_workflow_is_awaited(durable: Durable, inc: Any) -> None:
    @durable.workflow(name="async.map")
    async def wf() -> Any:
        return await durable.map(inc, [1, 2, 3])

    env = LocalEnvironment(durable, step_execution="dispatch")
    assert env.result(wf.start()) == [inc(1), inc(2), inc(3)]


@pytest.mark.parametrize("name", sorted(BLOCKING_CALLS))
def test_a_blocking_call_in_an_async_workflow_says_to_await_instead(
    durable: Durable, inc: Any, name: str
) -> None:
    call = BLOCKING_CALLS[name]

    @durable.workflow(name=f"blocking.{name}")
    async def wf() -> Any:
        return call(durable, inc)

    with pytest.raises(TypeError, match=AWAIT_INSTEAD):
        LocalEnvironment(durable, step_execution="dispatch").result(wf.start())


@pytest.mark.parametrize("name", ["gather", "first", "result"])
def test_a_blocking_call_is_refused_even_when_its_outcome_is_already_delivered(
    durable: Durable, inc: Any, name: str
) -> None:
    """Whether the outcome is in by then depends on how the log interleaved; the workflow
    must not fail on one run and pass on another."""

    @durable.workflow(name=f"late-blocking.{name}")
    async def wf() -> Any:
        pending = inc.defer(1)
        await sleep(10)
        assert pending.done()  # s1 was logged before the timer fired
        return {"gather": gather, "first": first, "result": Pending.result}[name](pending)

    env = WorkflowTestEnvironment(durable, step_execution="dispatch")
    handle = wf.start()
    env.run_until_idle()  # s1 completes
    with pytest.raises(TypeError, match=AWAIT_INSTEAD):
        env.advance(10)
        env.result(handle)


def test_receive_in_an_async_workflow_says_to_await_an_event_instead(durable: Durable) -> None:
    @durable.workflow
    async def wf() -> Any:
        return receive("approval")

    with pytest.raises(TypeError, match=r"await wait_for_event\(key\)"):
        LocalEnvironment(durable).result(wf.start())


def test_a_durable_sleep_in_an_async_workflow_is_an_awaitable_not_a_block(
    durable: Durable,
) -> None:
    @durable.workflow
    async def wf() -> str:
        forgotten = sleep(5)  # not awaited: a timer nobody waits for, and no error
        await sleep(60)
        return type(forgotten).__name__

    env = WorkflowTestEnvironment(durable)
    handle = wf.start()
    env.advance(60)
    assert env.result(handle) == "Pending"
    assert of_kind(durable.history(handle.run_id), "timer_started") == ["t1", "t2"]


IO_CALLS: dict[str, Callable[[], Any]] = {
    "create_connection": lambda: asyncio.get_running_loop().create_connection(
        asyncio.Protocol, "127.0.0.1", 9
    ),
    "open_connection": lambda: asyncio.open_connection("127.0.0.1", 9),
    "run_in_executor": lambda: asyncio.get_running_loop().run_in_executor(None, sum, [1]),
    "to_thread": lambda: asyncio.to_thread(sum, [1]),
    "getaddrinfo": lambda: asyncio.get_running_loop().getaddrinfo("localhost", 80),
    "create_server": lambda: asyncio.get_running_loop().create_server(asyncio.Protocol, port=0),
    "add_reader": lambda: asyncio.get_running_loop().add_reader(0, print),
    "subprocess": lambda: asyncio.create_subprocess_exec("true"),
}


@pytest.mark.parametrize("name", sorted(IO_CALLS))
def test_real_io_and_threads_in_an_async_workflow_are_refused_with_a_pointer_to_steps(
    durable: Durable, name: str
) -> None:
    make = IO_CALLS[name]

    @durable.workflow(name=f"io.{name}")
    async def wf() -> Any:
        return await make()

    env = LocalEnvironment(durable)
    with pytest.raises(RuntimeError, match=r"not available inside a durable workflow.*in a step"):
        env.result(wf.start())


def test_threads_cannot_call_back_into_a_workflow_loop(durable: Durable) -> None:
    @durable.workflow
    async def wf() -> Any:
        asyncio.get_running_loop().call_soon_threadsafe(print)

    with pytest.raises(RuntimeError, match="use a step"):
        LocalEnvironment(durable).result(wf.start())


def test_waiting_on_a_future_nobody_resolves_is_reported_not_hung(durable: Durable) -> None:
    @durable.workflow
    async def wf() -> Any:
        return await asyncio.get_running_loop().create_future()

    with pytest.raises(RuntimeError, match=r"not durable.*await steps, timers, events"):
        LocalEnvironment(durable).result(wf.start())


def test_the_loop_clock_is_the_log_clock_not_the_wall_clock(durable: Durable) -> None:
    @durable.workflow
    async def wf() -> list[float]:
        loop = asyncio.get_running_loop()
        times = [loop.time()]
        await asyncio.sleep(90)
        times.append(loop.time())
        await wait_for_event("poke")
        times.append(loop.time())
        return times

    env = WorkflowTestEnvironment(durable, start=500_000.0)
    handle = wf.start()
    env.advance(90)
    env.clock.advance(7.5)
    durable.send_event("poke")
    times = env.result(handle)
    assert times == [500_000.0, 500_090.0, 500_097.5]
    history = durable.history(handle.run_id)
    fired = next(e for e in history if e.kind == "timer_fired")
    received = next(e for e in history if e.kind == "event_received")
    assert times[1:] == [fired.millis / 1000, received.millis / 1000]
