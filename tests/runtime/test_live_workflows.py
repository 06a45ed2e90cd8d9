"""Live workflows: a parked run is resumed with only the new entries, and any doubt replays it."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest

from durable_celery import Durable
from durable_celery.testing.local import LocalEnvironment

STEPS = 20


class Sequential:
    """A 20-step sequential workflow that counts entries into its body and real step runs."""

    def __init__(self, durable: Durable) -> None:
        self.entered = 0
        self.executed: Counter[int] = Counter()

        @durable.step
        def advance(total: int, i: int) -> int:
            self.executed[i] += 1
            return total + i * i

        @durable.workflow
        def long_chain(n: int) -> int:
            self.entered += 1  # the prologue: runs again only when the body is replayed
            total = 0
            for i in range(n):
                total = advance(total, i)
            return total

        self.workflow = long_chain


def comparable(durable: Durable, run_id: str) -> list[tuple[str, str, dict[str, Any]]]:
    """The log without what differs run to run: entry ids and timings."""
    return [
        (e.kind, e.cid, {k: v for k, v in e.meta.items() if k != "ms"})
        for e in durable.history(run_id)
    ]


def drive(env: LocalEnvironment, after_each_pass: Callable[[], None]) -> None:
    queue = env.dispatcher.queue
    while queue:
        kind = queue[0][0]
        env.step_once()
        if kind == "wake":
            after_each_pass()


def test_a_live_sequential_workflow_enters_its_body_once_and_runs_each_step_once(
    durable: Durable,
) -> None:
    flow = Sequential(durable)
    env = LocalEnvironment(durable, step_execution="dispatch", live_workflows=True)
    handle = flow.workflow.start(STEPS)

    assert env.result(handle) == sum(i * i for i in range(STEPS))
    assert env.passes == STEPS + 1
    assert flow.entered == 1  # resumed on every wake, never replayed
    assert flow.executed == {i: 1 for i in range(STEPS)}


def test_without_live_workflows_the_body_is_replayed_on_every_pass(durable: Durable) -> None:
    flow = Sequential(durable)
    env = LocalEnvironment(durable, step_execution="dispatch", live_workflows=False)
    handle = flow.workflow.start(STEPS)

    assert env.result(handle) == sum(i * i for i in range(STEPS))
    assert flow.entered == STEPS + 1
    assert flow.executed == {i: 1 for i in range(STEPS)}


def test_live_and_replayed_runs_record_the_same_log(durable: Durable) -> None:
    flow = Sequential(durable)
    logs = []
    for live in (True, False):
        env = LocalEnvironment(durable, step_execution="dispatch", live_workflows=live)
        handle = flow.workflow.start(STEPS)
        env.run_until_idle()
        logs.append(comparable(durable, handle.run_id))
    assert logs[0] == logs[1]
    assert [cid for kind, cid, _ in logs[0] if kind == "step_completed"] == [
        f"s{i}" for i in range(1, STEPS + 1)
    ]


@pytest.mark.parametrize(
    "lose",
    [
        pytest.param(lambda env: env.runtime.live.reset(), id="parked-executions-forgotten"),
        pytest.param(lambda env: env.runtime.events.reset(), id="event-cache-dropped"),
        pytest.param(lambda env: env.runtime.reset_process_caches(), id="new-process"),
    ],
)
def test_a_live_execution_that_cannot_be_used_falls_back_to_full_replay(
    durable: Durable, lose: Callable[[LocalEnvironment], None]
) -> None:
    flow = Sequential(durable)
    env = LocalEnvironment(durable, step_execution="dispatch", live_workflows=True)
    handle = flow.workflow.start(STEPS)
    drive(env, lambda: lose(env))

    assert handle.result(timeout=0) == sum(i * i for i in range(STEPS))
    assert flow.entered == STEPS + 1  # every pass had to replay from the top
    assert flow.executed == {i: 1 for i in range(STEPS)}
    replayed_log = comparable(durable, handle.run_id)

    undisturbed = LocalEnvironment(durable, step_execution="dispatch", live_workflows=True)
    reference = flow.workflow.start(STEPS)
    undisturbed.run_until_idle()
    assert replayed_log == comparable(durable, reference.run_id)


def test_a_parked_execution_that_missed_entries_is_replayed_not_resumed(durable: Durable) -> None:
    flow = Sequential(durable)
    env = LocalEnvironment(durable, step_execution="dispatch", live_workflows=True)
    handle = flow.workflow.start(3)
    env.step_once()  # parks, waiting for s1
    env.step_once()  # s1 completes
    # Another process ran the next pass meanwhile (its entries are in the log, not in this
    # process' event cache): the parked execution here has seen less than the log now holds.
    env.runtime.events.drop(handle.run_id)

    assert env.result(handle) == 0 + 1 + 4
    assert flow.entered == 2
    assert flow.executed == {0: 1, 1: 1, 2: 1}


def test_finished_runs_leave_no_parked_execution_behind(durable: Durable) -> None:
    flow = Sequential(durable)
    env = LocalEnvironment(durable, step_execution="dispatch", live_workflows=True)
    handle = flow.workflow.start(2)
    env.step_once()
    assert len(env.runtime.live) == 1
    env.result(handle)
    assert len(env.runtime.live) == 0
