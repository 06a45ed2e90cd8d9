"""Fan-in does not cost one replay per completion: outcomes landing together are coalesced
into one queued wake and one pass, and the timing line says how many passes each
orchestrator invocation made."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from durable_celery import Durable, gather
from durable_celery.replay import events as ev
from durable_celery.testing import LocalEnvironment

from .support import queued_steps, queued_wakes, run_steps

WIDTH = 100


def timing_records(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "durable_celery.timing"]


def fan_out(durable: Durable) -> Any:
    @durable.step
    def square(x: int) -> int:
        return x * x

    @durable.workflow
    def wide(n: int) -> list[int]:
        return gather(*(square.defer(i) for i in range(n)))

    return wide


@pytest.mark.parametrize("live", [True, False])
def test_a_hundred_branches_finishing_together_queue_one_wake_and_cost_one_pass(
    durable: Durable, caplog: pytest.LogCaptureFixture, live: bool
) -> None:
    wide = fan_out(durable)
    env = LocalEnvironment(durable, step_execution="dispatch", live_workflows=live)
    caplog.set_level(logging.INFO, logger="durable_celery.timing")
    handle = wide.start(WIDTH)
    env.step_once()  # the first pass sends all the branches
    assert len(queued_steps(env)) == WIDTH
    wakes, passes = env.dispatcher.wakes, env.passes

    for _ in range(WIDTH):
        env.step_once()  # every branch records its outcome; only the first one wakes the run

    assert env.dispatcher.wakes == wakes + 1
    assert queued_wakes(env) == [handle.run_id]
    assert env.step_once() and not env.dispatcher.queue
    assert env.passes == passes + 1
    assert handle.result(timeout=0) == [i * i for i in range(WIDTH)]

    records = timing_records(caplog)
    assert len(records) == env.passes == 2  # one line per orchestrator invocation
    last = records[-1]
    assert "passes=1" in last.getMessage()
    assert last.durable["passes"] == 1  # type: ignore[attr-defined]
    assert last.durable["status"] == "completed"  # type: ignore[attr-defined]
    assert last.durable["replayed"] == (0 if live else WIDTH)  # type: ignore[attr-defined]


def test_outcomes_landing_during_a_pass_are_taken_by_that_invocation_without_a_new_wake(
    durable: Durable, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    wide = fan_out(durable)
    env = LocalEnvironment(durable, step_execution="dispatch")
    caplog.set_level(logging.INFO, logger="durable_celery.timing")
    handle = wide.start(3)
    env.step_once()
    run_steps(env, ["s1"])  # recorded; the gather still waits for s2 and s3: no wake
    wakes = env.dispatcher.wakes

    store = env.runtime.store
    finish_pass = store.finish_pass
    calls = 0

    def finish_pass_after_late_outcomes(
        run_id: str, token: str, last_id: str, waitfor: Any = None
    ) -> bool:
        nonlocal calls
        calls += 1
        if calls == 1:  # s2 and s3 finish on other workers while the pass is running
            run_steps(env, ["s2", "s3"])
        return finish_pass(run_id, token, last_id, waitfor)

    monkeypatch.setattr(store, "finish_pass", finish_pass_after_late_outcomes)
    assert store.request_wake(handle.run_id)  # a pass is queued (say, a redelivered wake)
    env.runtime.orchestrator.run(handle.run_id)

    assert env.dispatcher.wakes == wakes  # the flag was still set: no second pass queued
    assert not env.dispatcher.queue
    assert handle.result(timeout=0) == [0, 1, 4]
    last = timing_records(caplog)[-1]
    assert "passes=2" in last.getMessage()  # it looped once more instead of being re-queued
    assert last.durable["status"] == "completed"  # type: ignore[attr-defined]


def test_each_wake_reads_only_what_is_new_since_the_last_pass(
    durable: Durable, caplog: pytest.LogCaptureFixture
) -> None:
    wide = fan_out(durable)
    env = LocalEnvironment(durable, step_execution="dispatch")
    caplog.set_level(logging.INFO, logger="durable_celery.timing")
    handle = wide.start(10)
    env.step_once()
    run_steps(env, [f"s{i}" for i in range(1, 11)])
    env.run_until_idle()
    first, second = (r.durable for r in timing_records(caplog))  # type: ignore[attr-defined]
    assert first["entries"] == 11 and second["new"] == 10
    history = durable.history(handle.run_id)
    assert [e.kind for e in history].count(ev.STEP_COMPLETED) == 10


def test_a_gather_is_woken_once_by_its_last_branch_not_by_each_one(durable: Durable) -> None:
    wide = fan_out(durable)
    env = LocalEnvironment(durable, step_execution="dispatch")
    handle = wide.start(5)
    env.step_once()  # the pass that fans out, then suspends waiting for all five
    wakes = env.dispatcher.wakes
    run_steps(env, ["s1", "s2", "s3", "s4"])
    assert env.dispatcher.wakes == wakes  # recorded, no pass: the gather cannot move yet
    assert [e.kind for e in durable.history(handle.run_id)].count("step_completed") == 4
    run_steps(env, ["s5"])
    assert env.dispatcher.wakes == wakes + 1
    assert env.result(handle) == [0, 1, 4, 9, 16]
