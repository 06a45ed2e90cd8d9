"""The replay engine on its own: a workflow function, a history, and a host that stands in for the
runtime. No store, no Celery: what the engine decides from the log alone."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import pytest

from durable_celery.codec import Codec, Place
from durable_celery.errors import NondeterminismError
from durable_celery.replay import events as ev
from durable_celery.replay.commands import (
    AwaitEvent,
    Command,
    RecordMarker,
    ScheduleStep,
    StartChild,
    StartTimer,
)
from durable_celery.replay.context import ReplayContext
from durable_celery.replay.engine import WorkflowExecution
from durable_celery.replay.events import Event
from durable_celery.workflow import gather
from durable_celery.workflow.policy import RetryPolicy
from durable_celery.workflow.step import StepDefinition

RUN = "run-1"


def make_step(fn: Callable[..., Any], name: str) -> StepDefinition[..., Any]:
    return StepDefinition(fn, name=name, policy=RetryPolicy(retries=0))


def add_fn(a: int, b: int) -> int:
    return a + b


def mul_fn(a: int, b: int) -> int:
    return a * b


add = make_step(add_fn, "add")
mul = make_step(mul_fn, "mul")
STEPS: dict[str, Callable[..., Any]] = {"add": add_fn, "mul": mul_fn}


class RecordingHost:
    """Records what the engine asks for; with ``run_steps`` it also runs them at once."""

    def __init__(
        self,
        history: Sequence[Event] = (),
        *,
        run_steps: bool = True,
        steps: dict[str, Callable[..., Any]] = STEPS,
    ) -> None:
        self.run_id = RUN
        self.steps = steps
        self.codec = Codec()
        self.log: list[Event] = list(history)
        self.run_steps = run_steps
        self.asked: list[list[Command]] = []

    def fingerprint(self, value: Any, label: str) -> tuple[str, bytes]:
        return self.codec.fingerprint_packed(value, label=label)

    def outcome(self, event: Event) -> Any:
        value = self.codec.decode(event.payload or b"", Place(RUN, event.kind, event.cid))
        if event.kind == ev.STEP_FAILED:
            raise value
        return value

    def on_blocked(self, commands: Sequence[Command]) -> Sequence[Event]:
        self.asked.append(list(commands))
        if not self.run_steps:
            return []
        new: list[Event] = []
        for command in commands:
            assert isinstance(command, ScheduleStep)
            new.append(self.append(ev.STEP_SCHEDULED, command.cid, command.identity(), None))
            try:
                value = self.steps[command.name](*command.args, **command.kwargs)
            except Exception as exc:
                new.append(self.append(ev.STEP_FAILED, command.cid, {}, exc))
            else:
                new.append(self.append(ev.STEP_COMPLETED, command.cid, {}, value))
        return new

    def append(self, kind: str, cid: str, meta: dict[str, Any], value: Any) -> Event:
        payload = self.codec.encode(value, Place(RUN, kind, cid))
        event = Event(f"1-{len(self.log)}", kind, cid, meta, payload)
        self.log.append(event)
        return event


class ReplayOnlyHost(RecordingHost):
    """A host for a finished log: asking it for anything is a failure."""

    def on_blocked(self, commands: Sequence[Command]) -> Sequence[Event]:
        raise AssertionError(f"replay of a complete log asked for work: {commands}")


def execute(fn: Callable[..., Any], host: RecordingHost, *args: Any, live: bool = False) -> Any:
    execution = WorkflowExecution(
        fn, args, {}, run_id=RUN, workflow="wf", history=list(host.log), host=host, live=live
    )
    return execution, execution.start()


def arithmetic(x: int) -> int:
    y = add(x, 1)
    z = mul(y, 3)
    return add(z, y)


def test_each_kind_of_durable_call_has_its_own_correlation_sequence() -> None:
    ctx = ReplayContext(RUN, "wf", [], RecordingHost())
    prefixes = [ScheduleStep, StartTimer, ScheduleStep, RecordMarker, StartTimer, ScheduleStep]
    cids = [ctx.next_cid(command.prefix) for command in prefixes]
    assert cids == ["s1", "t1", "s2", "m1", "t2", "s3"]
    kinds = {ScheduleStep, StartTimer, AwaitEvent, StartChild, RecordMarker}
    assert len({command.prefix for command in kinds}) == len(kinds)


def test_a_fresh_run_asks_the_host_for_each_step_in_call_order() -> None:
    host = RecordingHost()
    _, result = execute(arithmetic, host, 4)

    assert (result.status, result.value) == ("completed", 20)
    asked = [[(c.cid, c.name, c.args) for c in batch] for batch in host.asked]
    assert asked == [[("s1", "add", (4, 1))], [("s2", "mul", (5, 3))], [("s3", "add", (15, 5))]]


def test_replaying_a_complete_log_returns_the_same_value_and_asks_for_nothing() -> None:
    recorder = RecordingHost()
    execute(arithmetic, recorder, 4)

    replayer = ReplayOnlyHost(recorder.log)
    execution, result = execute(arithmetic, replayer, 4)
    assert (result.status, result.value) == ("completed", 20)
    assert execution.ctx.replayed_calls == 3
    assert execution.ctx.new_calls == 0


def test_replaying_a_partial_log_asks_only_for_the_calls_it_does_not_hold() -> None:
    recorder = RecordingHost()
    execute(arithmetic, recorder, 4)
    prefix = recorder.log[:4]  # s1 and s2 with their outcomes

    host = RecordingHost(prefix, run_steps=False)
    _, result = execute(arithmetic, host, 4)
    assert result.status == "suspended"
    assert [[(c.cid, c.name, c.args) for c in batch] for batch in host.asked] == [
        [("s3", "add", (15, 5))]
    ]


def test_a_call_the_log_contradicts_blocks_the_pass_with_a_nondeterminism_error() -> None:
    recorder = RecordingHost()
    execute(arithmetic, recorder, 4)

    def reordered(x: int) -> int:
        y = add(x, 1)
        z = add(y, 3)  # the log says mul here
        return mul(z, y)

    execution, result = execute(reordered, ReplayOnlyHost(recorder.log), 4)
    assert result.status == "blocked"
    assert isinstance(result.error, NondeterminismError)
    assert "at s2 the log recorded step 'mul'" in str(result.error)
    assert "now calls step 'add'" in str(result.error)
    assert execution.ctx.diverged is result.error


def test_a_recorded_failure_is_raised_again_at_the_call_site_on_every_replay() -> None:
    def divide(a: int, b: int) -> float:
        return a / b

    div = make_step(divide, "divide")

    def careful(x: int) -> str:
        try:
            div(x, 0)
        except ZeroDivisionError as exc:
            return f"caught {exc}"
        return "no error"

    recorder = RecordingHost(steps={"divide": divide})
    _, first = execute(careful, recorder, 1)
    assert [e.kind for e in recorder.log] == [ev.STEP_SCHEDULED, ev.STEP_FAILED]
    _, again = execute(careful, ReplayOnlyHost(recorder.log), 1)
    assert first.value == again.value == "caught division by zero"


def test_gather_raises_the_failure_that_comes_first_in_the_log_not_in_argument_order() -> None:
    codec = Codec()

    def entry(n: int, kind: str, cid: str, value: Any) -> Event:
        return Event(f"1-{n}", kind, cid, {}, codec.encode(value, Place(RUN, kind, cid)))

    def scheduled(n: int, cid: str, a: int) -> Event:
        meta = {"name": "add", "h": codec.fingerprint(((a, 0), {}))}
        return Event(f"1-{n}", ev.STEP_SCHEDULED, cid, meta, None)

    history = [
        scheduled(0, "s1", 1),
        scheduled(1, "s2", 2),
        entry(2, ev.STEP_FAILED, "s2", KeyError("second")),
        entry(3, ev.STEP_FAILED, "s1", LookupError("first")),
    ]

    def fan_out() -> Any:
        try:
            return gather(add.defer(1, 0), add.defer(2, 0))
        except LookupError as exc:
            return type(exc).__name__

    _, result = execute(fan_out, ReplayOnlyHost(history))
    assert (result.status, result.value) == ("completed", "KeyError")


@pytest.mark.parametrize("live", [False, True], ids=["unwind", "park"])
def test_a_waiting_workflow_suspends_and_completes_once_the_outcome_arrives(live: bool) -> None:
    entered: list[int] = []

    def wf(x: int) -> int:
        entered.append(x)
        return add(x, 1)

    host = RecordingHost(run_steps=False)
    execution, result = execute(wf, host, 1, live=live)
    assert result.status == "suspended"
    assert execution.parked is live

    scheduled = host.append(ev.STEP_SCHEDULED, "s1", host.asked[0][0].identity(), None)
    completed = host.append(ev.STEP_COMPLETED, "s1", {}, 2)
    if live:
        result = execution.resume(host, [scheduled, completed])
        assert entered == [1]  # resumed where it parked, not replayed
    else:
        _, result = execute(wf, host, 1)
        assert entered == [1, 1]
    assert (result.status, result.value) == ("completed", 2)
