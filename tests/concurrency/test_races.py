"""first() and wait(): decided in log order, losers kept (or revoked), replays decide the same."""

from __future__ import annotations

import pytest

from durable_celery import ALL_COMPLETED, FIRST_COMPLETED, Durable, first, timer, wait
from durable_celery.replay import events as ev
from durable_celery.testing import LocalEnvironment, WorkflowTestEnvironment, replay_history

from .support import (
    RevokingDispatcher,
    of_kind,
    outcomes_per_cid,
    queued_steps,
    run_steps,
    run_wake,
)


class Broken(Exception):
    pass


def replays_the_same(durable: Durable, env: LocalEnvironment, run_id: str) -> None:
    report = replay_history(durable.history(run_id), durable.registry, env.runtime.codec, run_id)
    assert report.outcome in ("completed", "failed"), report
    assert report.matches_record is True
    assert report.next_commands == []


@pytest.mark.parametrize(("winner", "index"), [("s1", 0), ("s2", 1), ("s3", 2)])
def test_first_returns_the_index_and_result_of_the_call_completed_first_in_the_log(
    durable: Durable, winner: str, index: int
) -> None:
    @durable.step
    def mirror(text: str) -> str:
        return text[::-1]

    @durable.workflow
    def race() -> tuple[int, str]:
        return first(mirror.defer("abc"), mirror.defer("de"), mirror.defer("f"))

    env = LocalEnvironment(durable, step_execution="dispatch")
    handle = race.start()
    env.step_once()
    run_steps(env, [winner])
    run_wake(env)
    assert handle.status() == "completed"
    assert handle.result(timeout=0) == (index, ["cba", "ed", "f"][index])


def test_first_ignores_later_outcomes_already_in_the_log_when_it_replays(
    durable: Durable,
) -> None:
    """Both outcomes are in the log before the pass runs: the one logged first wins, now and
    in every replay, whatever order the log is read in."""

    @durable.step
    def ident(x: int) -> int:
        return x

    @durable.workflow
    def race() -> tuple[int, int]:
        return first(ident.defer(10), ident.defer(20))

    env = LocalEnvironment(durable, step_execution="dispatch", live_workflows=False)
    handle = race.start()
    env.step_once()
    run_steps(env, ["s2", "s1"])  # both recorded before the run is woken
    assert env.result(handle) == (1, 20)
    replays_the_same(durable, env, handle.run_id)


def test_a_race_losers_keep_running_and_their_outcomes_are_recorded_once(
    durable: Durable,
) -> None:
    @durable.step
    def ident(x: int) -> int:
        return x

    @durable.workflow
    def race() -> tuple[int, int]:
        return first(ident.defer(1), ident.defer(2), ident.defer(3))

    env = LocalEnvironment(durable, step_execution="dispatch")
    handle = race.start()
    env.step_once()
    run_steps(env, ["s3"])
    run_wake(env)
    assert handle.status() == "completed"
    assert sorted(queued_steps(env)) == ["s1", "s2"]  # not revoked: no revoke on this dispatcher
    env.run_until_idle()

    history = durable.history(handle.run_id)
    kinds = [(e.kind, e.cid) for e in history if e.kind != ev.STEP_SCHEDULED]
    assert kinds[:3] == [("run_started", ""), ("step_completed", "s3"), ("run_completed", "")]
    assert sorted(kinds[3:]) == [("step_completed", "s1"), ("step_completed", "s2")]
    assert outcomes_per_cid(history) == {"s1": 1, "s2": 1, "s3": 1}
    assert handle.result(timeout=0) == (2, 3)  # the late outcomes changed nothing
    replays_the_same(durable, env, handle.run_id)


@pytest.mark.parametrize("discard", [False, True])
def test_cancel_losers_revokes_the_losing_step_tasks_by_their_task_ids(
    durable: Durable, discard: bool
) -> None:
    @durable.step
    def ident(x: int) -> int:
        return x

    @durable.workflow
    def race() -> tuple[int, int]:
        return first(ident.defer(1), ident.defer(2), ident.defer(3), cancel_losers=True)

    dispatcher = RevokingDispatcher(discard=discard)
    env = LocalEnvironment(durable, step_execution="dispatch", dispatcher=dispatcher)
    handle = race.start()
    env.step_once()
    run_steps(env, ["s2"])
    run_wake(env)

    assert handle.result(timeout=0) == (1, 2)
    assert dispatcher.revoked == [[f"{handle.run_id}:s1", f"{handle.run_id}:s3"]]
    env.run_until_idle()
    history = durable.history(handle.run_id)
    if discard:  # revoked before a worker took them: they never ran
        assert outcomes_per_cid(history) == {"s2": 1}
    else:  # already running when revoked: they finish, and their outcomes are kept
        assert outcomes_per_cid(history) == {"s1": 1, "s2": 1, "s3": 1}
    replays_the_same(durable, env, handle.run_id)


def test_cancel_losers_revokes_only_step_tasks_not_timers(durable: Durable) -> None:
    @durable.step
    def ident(x: int) -> int:
        return x

    @durable.workflow
    def race() -> tuple[int, int]:
        return first(ident.defer(1), timer(3600), ident.defer(2), cancel_losers=True)

    dispatcher = RevokingDispatcher()
    env = WorkflowTestEnvironment(durable, step_execution="dispatch", dispatcher=dispatcher)
    handle = race.start()
    env.step_once()
    run_steps(env, ["s1"])
    run_wake(env)
    assert handle.result(timeout=0) == (0, 1)
    assert dispatcher.revoked == [[f"{handle.run_id}:s2"]]  # a timer has no task to revoke


def test_first_over_the_remaining_calls_delivers_each_outcome_exactly_once(
    durable: Durable,
) -> None:
    """A tournament: each round races what is left; every result comes out once, in log
    order, and a replay gives the same ranking."""

    @durable.step
    def ident(x: str) -> str:
        return x

    @durable.workflow
    def ranking(names: list[str]) -> list[str]:
        calls = [ident.defer(n) for n in names]
        order = []
        while calls:
            index, value = first(*calls)
            order.append(value)
            del calls[index]
        return order

    env = LocalEnvironment(durable, step_execution="dispatch")
    handle = ranking.start(["a", "b", "c", "d"])
    env.step_once()
    run_steps(env, ["s3", "s1", "s4", "s2"])
    assert env.result(handle) == ["c", "a", "d", "b"]
    replays_the_same(durable, env, handle.run_id)


def test_first_asked_again_over_the_same_calls_gives_the_same_winner(durable: Durable) -> None:
    @durable.step
    def ident(x: int) -> int:
        return x

    @durable.workflow
    def race() -> list[tuple[int, int]]:
        calls = (ident.defer(1), ident.defer(2))
        return [first(*calls), first(*calls), first(*reversed(calls))]

    env = LocalEnvironment(durable, step_execution="dispatch")
    handle = race.start()
    env.step_once()
    run_steps(env, ["s2"])
    run_wake(env)
    assert handle.result(timeout=0) == [(1, 2), (1, 2), (0, 2)]


def test_a_failed_first_finisher_raises_its_error(durable: Durable) -> None:
    @durable.step(retries=0)
    def broken() -> int:
        raise Broken("lost the race by failing")

    @durable.step
    def ident(x: int) -> int:
        return x

    @durable.workflow
    def race() -> str:
        try:
            first(ident.defer(1), broken.defer())
        except Broken as exc:
            return f"caught: {exc}"
        return "no error"

    env = LocalEnvironment(durable, step_execution="dispatch")
    handle = race.start()
    env.step_once()
    run_steps(env, ["s2", "s1"])
    assert env.result(handle) == "caught: lost the race by failing"


def test_a_step_racing_a_timer_loses_when_the_timer_fires_first(durable: Durable) -> None:
    @durable.step
    def ident(x: int) -> int:
        return x

    @durable.workflow
    def race() -> tuple[int, object]:
        return first(ident.defer(1), timer(60))

    env = WorkflowTestEnvironment(durable, step_execution="dispatch")
    handle = race.start()
    env.step_once()
    env.clock.advance(60)
    assert env.runtime.timers.fire_due() == 1
    run_wake(env)
    assert handle.result(timeout=0) == (1, None)
    env.run_until_idle()  # the step finishes later: recorded, changes nothing
    history = durable.history(handle.run_id)
    assert of_kind(history, ev.STEP_COMPLETED) == ["s1"]
    assert handle.result(timeout=0) == (1, None)


def test_wait_first_completed_returns_done_and_pending_in_argument_order(
    durable: Durable,
) -> None:
    @durable.step
    def ident(x: int) -> int:
        return x

    @durable.workflow
    def wf() -> dict[str, list[int]]:
        calls = [ident.defer(1), ident.defer(2), ident.defer(3)]
        done, pending = wait(calls, return_when=FIRST_COMPLETED)
        done_now = [calls.index(c) for c in done]
        pending_now = [calls.index(c) for c in pending]
        rest, none_left = wait(pending)  # ALL_COMPLETED
        return {
            "done": done_now,
            "pending": pending_now,
            "values": [c.result() for c in done + rest],
            "left": [calls.index(c) for c in none_left],
        }

    env = LocalEnvironment(durable, step_execution="dispatch")
    handle = wf.start()
    env.step_once()
    run_steps(env, ["s2"])
    run_wake(env)
    run_steps(env, ["s3", "s1"])
    assert env.result(handle) == {"done": [1], "pending": [0, 2], "values": [2, 1, 3], "left": []}
    replays_the_same(durable, env, handle.run_id)


def test_wait_all_completed_with_a_timeout_returns_what_finished_before_the_deadline(
    durable: Durable,
) -> None:
    @durable.step
    def ident(x: int) -> int:
        return x

    @durable.workflow
    def wf() -> tuple[list[int], list[int]]:
        calls = [ident.defer(1), ident.defer(2), ident.defer(3)]
        done, pending = wait(calls, return_when=ALL_COMPLETED, timeout=30)
        return [c.result() for c in done], [calls.index(c) for c in pending]

    env = WorkflowTestEnvironment(durable, step_execution="dispatch")
    handle = wf.start()
    env.step_once()
    run_steps(env, ["s3"])
    env.clock.advance(30)
    env.runtime.timers.fire_due()  # the deadline is logged before s1 and s2 finish
    run_steps(env, ["s1"])
    assert env.result(handle) == ([3], [0, 1])
    history = durable.history(handle.run_id)
    assert [e.cid for e in history if e.kind in ev.OUTCOME_KINDS][:2] == ["s3", "t1"]
    replays_the_same(durable, env, handle.run_id)


def test_wait_with_a_timeout_that_does_not_expire_returns_everything(durable: Durable) -> None:
    @durable.step
    def ident(x: int) -> int:
        return x

    @durable.workflow
    def wf() -> tuple[int, int]:
        done, pending = wait([ident.defer(1), ident.defer(2)], timeout=30)
        return len(done), len(pending)

    env = WorkflowTestEnvironment(durable, step_execution="dispatch")
    handle = wf.start()
    assert env.result(handle) == (2, 0)
    assert of_kind(durable.history(handle.run_id), ev.TIMER_FIRED) == []


def test_wait_refuses_an_unknown_return_when(durable: Durable) -> None:
    @durable.step
    def ident(x: int) -> int:
        return x

    @durable.workflow
    def wf() -> None:
        wait([ident.defer(1)], return_when="FIRST_EXCEPTION")

    env = LocalEnvironment(durable, step_execution="dispatch")
    with pytest.raises(ValueError, match="FIRST_COMPLETED or ALL_COMPLETED"):
        env.result(wf.start())
