"""Property: a random workflow of sequences, gathers, races and gathers of child workflows, run
with its queued work done in any order, returns what plain Python says it must (races decided
by the log), records each outcome once, and its saved log replays with a fresh engine to the
same value without asking for anything new."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import pytest
from celery import Celery
from hypothesis import given, settings
from hypothesis import strategies as st

from durable_celery import Durable, first, gather
from durable_celery.codec import Codec
from durable_celery.replay import events as ev
from durable_celery.replay.events import Event
from durable_celery.testing import LocalEnvironment, replay_history
from durable_celery.workflow import current_step

from .support import RevokingDispatcher, outcomes_per_cid

MODULUS = 1_000_003

OPERATIONS = (
    lambda acc, x: (acc + x) % MODULUS,
    lambda acc, x: (acc * (x + 2)) % MODULUS,
    lambda acc, x: (acc * 7 - x) % MODULUS,
)

Call = tuple[int, int]  # (operation index, argument)
Program = list[tuple[Any, ...]]


def fold(acc: int, results: Sequence[int]) -> int:
    for result in results:  # in argument order: a reordering changes the value
        acc = (acc * 31 + result) % MODULUS
    return acc


def evaluate_plain(program: Program, acc: int) -> int:
    """A child's program (sequences and gathers only): its value does not depend on timing."""
    for op in program:
        if op[0] == "seq":
            acc = OPERATIONS[op[1]](acc, op[2])
        else:
            acc = fold(acc, [OPERATIONS[i](acc, x) for i, x in op[1]])
    return acc


def expected_trace(program: Program, history: list[Event]) -> list[int]:
    """What the parent must return; a race is won by the call whose outcome is logged first."""
    position: dict[str, int] = {}
    for index, event in enumerate(history):
        if event.kind in ev.OUTCOME_KINDS:
            position.setdefault(event.cid, index)
    acc, steps, trace = 1, 0, []
    for op in program:
        kind = op[0]
        if kind == "seq":
            steps += 1
            acc = OPERATIONS[op[1]](acc, op[2])
        elif kind == "gather":
            steps += len(op[1])
            acc = fold(acc, [OPERATIONS[i](acc, x) for i, x in op[1]])
        elif kind == "first":
            cids = [f"s{steps + k + 1}" for k in range(len(op[1]))]
            steps += len(cids)
            winner = min(range(len(cids)), key=lambda k: position.get(cids[k], math.inf))
            index, x = op[1][winner]
            acc = (acc * 31 + winner * 1000 + OPERATIONS[index](acc, x)) % MODULUS
        else:  # children
            acc = fold(acc, [evaluate_plain(sub, acc) for sub in op[1]])
        trace.append(acc)
    return trace


calls = st.tuples(st.integers(0, len(OPERATIONS) - 1), st.integers(-30, 30))
plain_ops = st.one_of(
    st.tuples(st.just("seq"), st.integers(0, len(OPERATIONS) - 1), st.integers(-30, 30)),
    st.tuples(st.just("gather"), st.lists(calls, min_size=1, max_size=3).map(tuple)),
)
sub_programs = st.lists(plain_ops, min_size=0, max_size=3)
parent_ops = st.one_of(
    plain_ops,
    st.tuples(st.just("first"), st.lists(calls, min_size=1, max_size=3).map(tuple), st.booleans()),
    st.tuples(st.just("children"), st.lists(sub_programs, min_size=1, max_size=3).map(tuple)),
)
programs = st.lists(parent_ops, min_size=0, max_size=6)


@dataclass
class RaceApp:
    durable: Durable = field(repr=False)
    parent: Any
    child: Any


@pytest.fixture(scope="module")
def race_app() -> RaceApp:
    durable = Durable(Celery("race-props", broker="memory://"))

    @durable.step(retries=1, backoff=0)
    def apply(index: int, acc: int, x: int) -> int:
        info = current_step()
        assert info is not None
        if info.attempt == 1 and x % 5 == 0:
            raise ConnectionError("first attempts at multiples of 5 fail; the retry succeeds")
        return int(OPERATIONS[index](acc, x))

    def run_plain(op: tuple[Any, ...], acc: int) -> int:
        if op[0] == "seq":
            return int(apply(op[1], acc, op[2]))
        return fold(acc, gather(*(apply.defer(i, acc, x) for i, x in op[1])))

    @durable.workflow(name="props.child")
    def child(program: Program, acc: int) -> int:
        for op in program:
            acc = run_plain(op, acc)
        return acc

    @durable.workflow(name="props.parent")
    def parent(program: Program) -> list[int]:
        acc, trace = 1, []
        for op in program:
            if op[0] in ("seq", "gather"):
                acc = run_plain(op, acc)
            elif op[0] == "first":
                winner, value = first(
                    *(apply.defer(i, acc, x) for i, x in op[1]), cancel_losers=op[2]
                )
                acc = (acc * 31 + winner * 1000 + value) % MODULUS
            else:
                handles = [child.start(sub, acc) for sub in op[1]]
                acc = fold(acc, gather(*(h.pending for h in handles)))
            trace.append(acc)
        return trace

    return RaceApp(durable, parent, child)


def every_run(durable: Durable, run_id: str) -> list[str]:
    runs = [run_id]
    for run in runs:
        runs += [e.meta["child"] for e in durable.history(run) if e.kind == ev.CHILD_STARTED]
    return runs


@settings(max_examples=40, deadline=None)
@given(
    program=programs,
    mode=st.sampled_from(["dispatch", "auto", "inline"]),
    live=st.booleans(),
    discard_revoked=st.booleans(),
    data=st.data(),
)
def test_any_workflow_in_any_interleaving_gives_the_logged_value_and_replays_to_it(
    race_app: RaceApp,
    program: Program,
    mode: str,
    live: bool,
    discard_revoked: bool,
    data: st.DataObject,
) -> None:
    durable = race_app.durable
    dispatcher = RevokingDispatcher(discard=discard_revoked)
    env = LocalEnvironment(durable, step_execution=mode, live_workflows=live, dispatcher=dispatcher)
    # A fixed run id (each example has a store of its own): the draws below must mean the same
    # items every time Hypothesis runs an example again.
    handle = race_app.parent.start(program, run_id="props")

    queue = env.dispatcher.queue
    while True:
        if not queue:
            if not env.runtime.timers.fire_due():
                break
            # Retries due together fire in the order of their deadlines, which are wall-clock
            # milliseconds: order what they queued by run, call and attempt instead, so that a
            # draw picks the same item whenever Hypothesis runs this example again.
            ordered = sorted(queue, key=lambda item: repr((item[:4], item[5:6])))
            queue.clear()
            queue.extend(ordered)
            continue  # (nothing queued: a due retry found its step settled already)
        pick = data.draw(st.integers(0, len(queue) - 1), label="next queued item")
        item = queue[pick]
        del queue[pick]
        queue.appendleft(item)
        env.step_once()

    assert handle.status() == "completed"
    history = durable.history(handle.run_id)
    value = handle.result(timeout=0)
    assert value == expected_trace(program, history)

    runs = every_run(durable, handle.run_id)
    assert len(runs) == 1 + sum(len(op[1]) for op in program if op[0] == "children")
    revoked = {task_id for ids in dispatcher.revoked for task_id in ids}
    for run_id in runs:
        log = durable.history(run_id)
        outcomes = outcomes_per_cid(log)
        assert all(n == 1 for n in outcomes.values()), (run_id, outcomes)  # never twice
        for cid in (e.cid for e in log if e.kind == ev.STEP_SCHEDULED):
            # every step settled, except a race's loser revoked before it ran
            assert cid in outcomes or (discard_revoked and f"{run_id}:{cid}" in revoked)

        report = replay_history(log, durable.registry, Codec(), run_id)  # a fresh engine
        assert report.outcome == "completed", report
        assert report.next_commands == []
        assert report.matches_record is True
        if run_id == handle.run_id:
            assert report.value == value
