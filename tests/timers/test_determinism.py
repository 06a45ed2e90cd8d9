"""Deterministic helpers: now(), random(), uuid4(), workflow_info() and patched().

Each one takes its value from the log (or from the run's own seeded generator), so replaying the
same log gives the same values: ``replay_history`` re-runs the workflow read-only against a
recorded history and says whether the outcome matches the recorded one.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from durable_celery import (
    Durable,
    WorkflowBlocked,
    now,
    patched,
    random,
    sleep,
    uuid4,
    wait_for_event,
    workflow_info,
)
from durable_celery.testing import WorkflowTestEnvironment, replay_history

from .support import kinds, only


def at(millis: int) -> datetime:
    return datetime.fromtimestamp(millis / 1000, tz=timezone.utc)


def replayed(durable: Durable, env: WorkflowTestEnvironment, run_id: str) -> Any:
    report = replay_history(durable.history(run_id), durable.registry, env.runtime.codec, run_id)
    assert report.outcome == "completed", report.error
    assert report.matches_record is True
    return report.value


def test_now_random_and_uuid4_replay_to_the_same_values(durable: Durable) -> None:
    @durable.workflow
    def draw() -> dict[str, Any]:
        first = (now(), random(), uuid4())
        sleep(timedelta(minutes=10))
        second = (now(), random(), uuid4())
        return {"first": first, "second": second}

    env = WorkflowTestEnvironment(durable)
    handle = draw.start()
    env.advance(minutes=10)
    value = env.result(handle)
    (t1, r1, u1), (t2, r2, u2) = value["first"], value["second"]

    history = durable.history(handle.run_id)
    assert t1 == at(history[0].millis)  # the log's time, not a wall clock
    assert t2 == at(only(history, "timer_fired").millis)
    assert t2 - t1 == timedelta(minutes=10)  # and it moves forward with the log
    assert 0 <= r1 < 1 and 0 <= r2 < 1 and r1 != r2
    assert isinstance(u1, uuid.UUID) and u1.version == 4 and u1 != u2
    # The value was produced across two passes (before and after the sleep), and a replay of
    # the whole log from the top gives it again.
    assert replayed(durable, env, handle.run_id) == value


def test_a_replay_that_disagrees_with_the_record_is_reported(durable: Durable) -> None:
    """The check above can fail: a workflow reading the wall clock does not replay."""

    @durable.workflow
    def wall_clock() -> float:
        sleep(1)
        return datetime.now(timezone.utc).timestamp()

    env = WorkflowTestEnvironment(durable)
    handle = wall_clock.start()
    env.advance(1)
    env.result(handle)
    history = durable.history(handle.run_id)
    report = replay_history(history, durable.registry, env.runtime.codec, handle.run_id)
    assert report.matches_record is False


def test_every_run_draws_its_own_values(durable: Durable) -> None:
    @durable.workflow
    def draw() -> tuple[float, uuid.UUID]:
        return random(), uuid4()

    env = WorkflowTestEnvironment(durable)
    results = [env.result(draw.start()) for _ in range(5)]
    assert len({r for r, _ in results}) == 5
    assert len({u for _, u in results}) == 5


def test_random_values_do_not_depend_on_how_many_passes_the_run_took(durable: Durable) -> None:
    """The same run id gives the same sequence whether it ran in one pass or in several."""

    @durable.workflow(name="draw")
    def draw(naps: int) -> list[float]:
        values = []
        for _ in range(3):
            values.append(random())
            if naps:
                sleep(1)
        return values

    env = WorkflowTestEnvironment(durable)
    many = draw.start(1, run_id="same-seed-a")
    env.advance(1)
    env.advance(1)
    env.advance(1)
    assert replayed(durable, env, "same-seed-a") == env.result(many)
    assert len(set(env.result(many))) == 3


def test_workflow_info_names_the_run_the_workflow_the_attempt_and_the_start(
    durable: Durable,
) -> None:
    @durable.workflow(name="shop.checkout")
    def checkout(order: str) -> dict[str, Any]:
        sleep(5)
        return vars(workflow_info())  # WorkflowInfo itself is not a storable type

    env = WorkflowTestEnvironment(durable)
    handle = checkout.start("o-1", run_id="order-o-1")
    env.advance(5)
    info = env.result(handle)
    started = durable.history(handle.run_id)[0]
    assert info == {
        "run_id": "order-o-1",
        "workflow": "shop.checkout",
        "attempt": 1,
        "start_time": at(started.millis),  # the start, not the time of the second pass
    }
    assert replayed(durable, env, handle.run_id) == info


def test_workflow_info_counts_an_attempt_for_every_resume_of_a_blocked_run(
    durable: Durable,
) -> None:
    @durable.step(name="old")
    def old() -> None: ...

    @durable.step(name="new")
    def new() -> None: ...

    def define(step: Any) -> Any:
        @durable.workflow(name="nap")
        def nap() -> list[int]:
            step()
            sleep(5)
            before = workflow_info().attempt
            sleep(1)
            return [before, workflow_info().attempt]

        return nap

    nap = define(old)
    env = WorkflowTestEnvironment(durable)
    handle = nap.start()
    env.run_until_idle()
    define(new)  # a deploy that calls another step: the recorded run no longer replays
    env.advance(5)
    with pytest.raises(WorkflowBlocked, match="not deterministic"):
        env.result(handle)
    define(old)  # the fix
    assert handle.resume() is True
    env.advance(1)
    # The attempt is the log's: a call replayed from before the resume still sees attempt 1
    # (so it replays to the same value); one reached after it in log order sees attempt 2.
    assert env.result(handle) == [1, 2]
    assert replayed(durable, env, handle.run_id) == [1, 2]


# -- patched() -------------------------------------------------------------------------------------
def define_checkout(durable: Durable, version: str) -> Any:
    """Version A charges the old way; version B guards a new way with ``patched``."""

    @durable.step(name="charge_v1")
    def charge_v1(order: str) -> str:
        return f"v1:{order}"

    @durable.step(name="charge_v2")
    def charge_v2(order: str) -> str:
        return f"v2:{order}"

    if version == "A":

        @durable.workflow(name="checkout")
        def checkout(order: str) -> list[Any]:
            receipt = charge_v1(order)
            wait_for_event(f"ship:{order}")
            return [receipt]

    else:

        @durable.workflow(name="checkout")
        def checkout(order: str) -> list[Any]:
            receipt = charge_v2(order) if patched("charge-v2") else charge_v1(order)
            wait_for_event(f"ship:{order}")
            return [receipt]

    return checkout


def test_patched_is_true_for_a_new_run_and_stays_true_on_replay(durable: Durable) -> None:
    checkout = define_checkout(durable, "B")
    env = WorkflowTestEnvironment(durable)
    handle = checkout.start("o-2")
    env.run_until_idle()
    durable.send_event("ship:o-2")
    assert env.result(handle) == ["v2:o-2"]
    history = durable.history(handle.run_id)
    marker = only(history, "marker")
    assert marker.meta == {"name": "charge-v2"}  # the decision is recorded
    assert replayed(durable, env, handle.run_id) == ["v2:o-2"]


def test_patched_is_false_for_a_run_recorded_by_old_code_that_went_past_it(
    durable: Durable,
) -> None:
    env = WorkflowTestEnvironment(durable)
    checkout = define_checkout(durable, "A")
    old = checkout.start("o-1")
    env.run_until_idle()  # charged with v1, now waiting for shipping
    old_history = durable.history(old.run_id)
    assert kinds(old_history) == [
        "run_started",
        "step_completed",  # the inline step v1, call and outcome in one entry
        "event_awaited",
    ]

    checkout = define_checkout(durable, "B")  # the deploy
    # A read-only replay of the old log with the new code takes the old path...
    report = replay_history(old_history, durable.registry, env.runtime.codec, old.run_id)
    assert report.outcome == "waiting" and report.error is None
    # ...and so does the run itself when it continues under the new code.
    durable.send_event("ship:o-1")
    assert env.result(old) == ["v1:o-1"]
    assert "marker" not in kinds(durable.history(old.run_id))
    assert replayed(durable, env, old.run_id) == ["v1:o-1"]

    new = checkout.start("o-3")  # a run started after the deploy takes the new path
    env.run_until_idle()
    durable.send_event("ship:o-3")
    assert env.result(new) == ["v2:o-3"]


def test_patched_at_a_point_the_old_run_had_not_reached_takes_the_new_path(
    durable: Durable,
) -> None:
    def define(new_code: bool) -> Any:
        @durable.workflow(name="greet")
        def greet() -> str:
            sleep(60)
            if new_code and patched("polite"):
                return "good morning"
            return "hi"

        return greet

    greet = define(False)
    env = WorkflowTestEnvironment(durable)
    handle = greet.start()
    env.run_until_idle()  # asleep before the changed line: nothing recorded past it
    define(True)
    env.advance(60)
    assert env.result(handle) == "good morning"
