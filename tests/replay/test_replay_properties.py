"""Property: any workflow program, run with its step tasks finishing in any order, gives the value
plain Python gives, and its saved log replays to that value without asking for new work."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import pytest
from celery import Celery
from hypothesis import given, settings
from hypothesis import strategies as st

from durable_celery import Durable, gather
from durable_celery.codec import Codec, Place
from durable_celery.replay import events as ev
from durable_celery.replay.commands import Command
from durable_celery.replay.engine import WorkflowExecution
from durable_celery.replay.events import Event
from durable_celery.testing.local import LocalEnvironment
from durable_celery.workflow import current_step

MODULUS = 1_000_003

#: The arithmetic each step does, by index; plain Python evaluates programs with the same table.
OPERATIONS = (
    lambda acc, x: (acc + x) % MODULUS,
    lambda acc, x: (acc * (x + 2)) % MODULUS,
    lambda acc, x: (acc * 7 - x) % MODULUS,
)

Program = list[tuple[Any, ...]]


def evaluate(program: Program) -> list[int]:
    """What the workflow must return: the accumulator after each operation."""
    acc, trace = 1, []
    for op in program:
        if op[0] == "seq":
            acc = OPERATIONS[op[1]](acc, op[2])
        else:
            results = [OPERATIONS[index](acc, x) for index, x in op[1]]
            for result in results:  # folded in argument order: a reordering changes the value
                acc = (acc * 31 + result) % MODULUS
        trace.append(acc)
    return trace


calls = st.tuples(st.integers(0, len(OPERATIONS) - 1), st.integers(-50, 50))
operations = st.one_of(
    st.tuples(st.just("seq"), st.integers(0, len(OPERATIONS) - 1), st.integers(-50, 50)),
    st.tuples(st.just("gather"), st.lists(calls, min_size=1, max_size=4).map(tuple)),
)
programs = st.lists(operations, min_size=0, max_size=8)


@dataclass
class ProgramApp:
    durable: Durable = field(repr=False)
    workflow: Any
    attempts: list[tuple[str, str, int]] = field(repr=False)


@pytest.fixture(scope="module")
def program_app() -> ProgramApp:
    durable = Durable(Celery("props", broker="memory://"))
    attempts: list[tuple[str, str, int]] = []

    @durable.step(retries=1, backoff=0)
    def apply(index: int, acc: int, x: int) -> int:
        info = current_step()
        assert info is not None
        attempts.append((info.run_id, info.cid, info.attempt))
        if info.attempt == 1 and x % 5 == 0:
            raise ConnectionError("first attempts at multiples of 5 fail; the retry succeeds")
        return int(OPERATIONS[index](acc, x))

    @durable.workflow
    def run_program(program: Program) -> list[int]:
        acc, trace = 1, []
        for op in program:
            if op[0] == "seq":
                acc = apply(op[1], acc, op[2])
            else:
                results = gather(*(apply.defer(index, acc, x) for index, x in op[1]))
                for result in results:
                    acc = (acc * 31 + result) % MODULUS
            trace.append(acc)
        return trace

    return ProgramApp(durable, run_program, attempts)


class ReplayOnlyHost:
    """Decodes with a fresh codec; any request for new work is a failure."""

    def __init__(self, run_id: str) -> None:
        self.run_id = run_id
        self.codec = Codec()

    def fingerprint(self, value: Any, label: str) -> tuple[str, bytes]:
        return self.codec.fingerprint_packed(value, label=label)

    def outcome(self, event: Event) -> Any:
        value = self.codec.decode(event.payload or b"", Place(self.run_id, event.kind, event.cid))
        if event.kind == ev.STEP_FAILED:
            raise value
        return value

    def on_blocked(self, commands: Sequence[Command]) -> Sequence[Event]:
        raise AssertionError(f"the saved log lacks outcomes: replay asked for {commands}")


@settings(max_examples=40, deadline=None)
@given(
    program=programs,
    mode=st.sampled_from(["dispatch", "auto", "inline"]),
    live=st.booleans(),
    data=st.data(),
)
def test_any_program_run_in_any_completion_order_gives_the_plain_python_value(
    program_app: ProgramApp, program: Program, mode: str, live: bool, data: st.DataObject
) -> None:
    durable = program_app.durable
    env = LocalEnvironment(durable, step_execution=mode, live_workflows=live)
    handle = program_app.workflow.start(program)

    queue = env.dispatcher.queue
    while queue or env.runtime.timers.fire_due():
        if not queue:
            continue  # a due retry found its step settled already
        pick = data.draw(st.integers(0, len(queue) - 1), label="next queued item")
        item = queue[pick]
        del queue[pick]
        queue.appendleft(item)
        env.step_once()

    expected = evaluate(program)
    assert handle.status() == "completed"
    assert handle.result(timeout=0) == expected

    history = durable.history(handle.run_id)
    outcomes = Counter(e.cid for e in history if e.kind in ev.OUTCOME_KINDS)
    scheduled = [e.cid for e in history if ev.records_call(e)]  # inline steps: one entry
    assert all(count == 1 for count in outcomes.values()), outcomes
    assert sorted(outcomes) == sorted(scheduled)
    assert len(scheduled) == sum(1 if op[0] == "seq" else len(op[1]) for op in program)

    mine = [(cid, attempt) for run, cid, attempt in program_app.attempts if run == handle.run_id]
    assert len(mine) == len(set(mine))  # no attempt of any step ran twice

    # The saved log, replayed from scratch by a bare engine: same value, nothing new asked for.
    execution = WorkflowExecution(
        program_app.workflow.fn,
        (program,),
        {},
        run_id=handle.run_id,
        workflow=program_app.workflow.name,
        history=history,
        host=ReplayOnlyHost(handle.run_id),
    )
    replayed = execution.start()
    assert (replayed.status, replayed.value) == ("completed", expected)
    assert execution.ctx.new_calls == 0

    # A stray wake of the finished run, in a process that forgot everything, changes nothing.
    env.runtime.reset_process_caches()
    env.dispatcher.wake(handle.run_id)
    env.run_until_idle()
    assert [e.entry_id for e in durable.history(handle.run_id)] == [e.entry_id for e in history]
