"""Replay basics: recorded outcomes answer replayed calls, and every execution mode agrees."""

from __future__ import annotations

import itertools
from collections import Counter

import pytest

from durable_celery import Durable, gather
from durable_celery.errors import NotInWorkflowError
from durable_celery.replay import events as ev
from durable_celery.testing.local import LocalEnvironment

MODES = ("inline", "dispatch", "auto")


def kinds_and_cids(durable: Durable, run_id: str) -> list[tuple[str, str]]:
    return [(e.kind, e.cid) for e in durable.history(run_id)]


def test_a_completed_step_is_not_executed_again_on_later_passes(durable: Durable) -> None:
    executions: Counter[int] = Counter()

    @durable.step
    def square(x: int) -> int:
        executions[x] += 1
        return x * x

    @durable.workflow
    def squares(n: int) -> int:
        return sum(square(i) for i in range(n))

    # Dispatch + no live executions: every step completion is a new pass replayed from the top.
    env = LocalEnvironment(durable, step_execution="dispatch", live_workflows=False)
    handle = squares.start(6)

    assert env.result(handle) == sum(i * i for i in range(6))
    assert env.passes == 7  # the first pass, then one per completed step
    assert executions == {i: 1 for i in range(6)}


def test_replay_returns_the_recorded_result_rather_than_calling_the_step_again(
    durable: Durable,
) -> None:
    tickets = itertools.count(100)
    seen_by_replays: list[int] = []

    @durable.step
    def take_ticket() -> int:
        return next(tickets)  # a different value on every real execution

    @durable.step
    def wait_a_bit(x: int) -> int:
        return x

    @durable.workflow
    def queue_up() -> tuple[int, int]:
        ticket = take_ticket()
        seen_by_replays.append(ticket)
        wait_a_bit(1)
        wait_a_bit(2)
        return ticket, take_ticket()

    env = LocalEnvironment(durable, step_execution="dispatch", live_workflows=False)
    assert env.result(queue_up.start()) == (100, 101)
    assert seen_by_replays == [100, 100, 100, 100]  # four passes, one recorded value


def test_an_inline_step_recorded_in_an_earlier_pass_is_replayed_not_rerun(
    durable: Durable,
) -> None:
    calls: list[str] = []

    @durable.step(execution="inline")
    def local(x: int) -> int:
        calls.append("local")
        return x + 1

    @durable.step(execution="dispatch")
    def remote(x: int) -> int:
        calls.append("remote")
        return x * 2

    @durable.workflow
    def mixed(x: int) -> int:
        return remote(local(x)) + local(x)

    env = LocalEnvironment(durable, step_execution="inline", live_workflows=False)
    assert env.result(mixed.start(3)) == 8 + 4
    assert env.passes == 2
    assert calls == ["local", "remote", "local"]


@pytest.mark.parametrize("mode", MODES)
def test_every_step_execution_mode_gives_the_same_result_and_outcomes(
    durable: Durable, mode: str
) -> None:
    executions: Counter[str] = Counter()
    attempts: dict[int, int] = {}

    @durable.step
    def double(x: int) -> int:
        executions["double"] += 1
        return 2 * x

    @durable.step(retries=2, backoff=0)
    def flaky_increment(x: int) -> int:
        executions["flaky"] += 1
        attempts[x] = attempts.get(x, 0) + 1
        if attempts[x] < 3:
            raise ConnectionError(f"attempt {attempts[x]} of {x}")
        return x + 1

    @durable.workflow
    def pipeline(x: int) -> list[int]:
        first = double(x)
        fanned = gather(double.defer(first), flaky_increment.defer(first), double.defer(1))
        last = flaky_increment(sum(fanned))
        return [first, *fanned, last]

    env = LocalEnvironment(durable, step_execution=mode)
    handle = pipeline.start(5)
    result = env.result(handle)

    assert result == [10, 20, 11, 2, 34]
    assert executions == {"double": 3, "flaky": 6}  # each flaky call: 2 failures, 1 success
    outcomes = Counter(kind for kind, _ in kinds_and_cids(durable, handle.run_id))
    calls = [e.cid for e in durable.history(handle.run_id) if ev.records_call(e)]
    assert len(calls) == len(set(calls)) == 5  # inline steps that settled: one entry each
    assert outcomes["step_completed"] == 5
    assert outcomes["step_retrying"] == 4
    assert outcomes["step_failed"] == 0


def test_step_correlation_ids_follow_call_order_including_gather_branches(
    durable: Durable,
) -> None:
    @durable.step
    def echo(x: int) -> int:
        return x

    @durable.workflow
    def fan(n: int) -> int:
        head = echo(0)
        middle = gather(*(echo.defer(i) for i in range(1, n + 1)))
        return head + sum(middle) + echo(n + 1)

    env = LocalEnvironment(durable, step_execution="dispatch")
    handle = fan.start(3)
    assert env.result(handle) == 0 + 6 + 4

    scheduled = [e for e in durable.history(handle.run_id) if e.kind == "step_scheduled"]
    assert [e.cid for e in scheduled] == ["s1", "s2", "s3", "s4", "s5"]
    # The gather's branches are numbered in argument order: s2 carries echo(1), s4 echo(3).
    codec = env.runtime.codec
    expected_hashes = [codec.fingerprint(((i,), {})) for i in range(5)]
    assert [e.meta["h"] for e in scheduled] == expected_hashes


def test_a_step_called_outside_a_workflow_is_a_plain_function_call(durable: Durable) -> None:
    calls: list[int] = []

    @durable.step(retries=5)
    def record(x: int) -> int:
        calls.append(x)
        return x * 3

    env = LocalEnvironment(durable)
    assert record(7) == 21
    assert calls == [7]
    assert env.store.list_runs() == []
    assert not env.dispatcher.queue


def test_a_failing_step_called_outside_a_workflow_raises_at_once_without_retrying(
    durable: Durable,
) -> None:
    calls: list[int] = []

    @durable.step(retries=5, backoff=0)
    def fails(x: int) -> int:
        calls.append(x)
        raise KeyError(x)

    with pytest.raises(KeyError):
        fails(1)
    assert calls == [1]


def test_a_workflow_called_directly_runs_as_plain_code_with_plain_step_calls(
    durable: Durable,
) -> None:
    @durable.step
    def inc(x: int) -> int:
        return x + 1

    @durable.workflow
    def twice(x: int) -> int:
        return inc(inc(x))

    env = LocalEnvironment(durable)
    assert twice(1) == 3
    assert env.store.list_runs() == []


def test_defer_outside_a_workflow_raises_not_in_workflow_error(durable: Durable) -> None:
    @durable.step
    def inc(x: int) -> int:
        return x + 1

    with pytest.raises(NotInWorkflowError, match=r"defer\(\).*inside a running @durable.workflow"):
        inc.defer(1)


def test_gather_outside_a_workflow_raises_not_in_workflow_error() -> None:
    with pytest.raises(NotInWorkflowError, match=r"gather\(\)"):
        gather()
