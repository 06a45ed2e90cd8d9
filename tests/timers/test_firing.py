"""Firing timers: claimed, acted on (append-once), then removed; retries are timers too.

These run on the memory store with a virtual clock (the same timer contract as Redis), so a
test can fail the store at the exact moment it wants: between the append and the remove, or in
the append itself. A claim hides a timer for ``max(lease_timeout, 5)`` seconds (60 here).
"""

from __future__ import annotations

import logging
from typing import Any

import pytest

from durable_celery import Durable, current_step, sleep
from durable_celery.testing import WorkflowTestEnvironment

from .support import count_per_cid, kinds, only

CLAIM = 60  # seconds a claimed timer stays hidden (the default lease timeout)


def fail_once(monkeypatch: pytest.MonkeyPatch, obj: Any, name: str) -> list[int]:
    """Make ``obj.name`` raise ConnectionError on its first call only; return the call count."""
    real = getattr(obj, name)
    calls: list[int] = []

    def flaky(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        if len(calls) == 1:
            raise ConnectionError("redis went away")
        return real(*args, **kwargs)

    monkeypatch.setattr(obj, name, flaky)
    return calls


@pytest.fixture
def napping(durable: Durable) -> Any:
    @durable.workflow
    def nap() -> str:
        sleep(10)
        return "awake"

    return nap


def test_a_timer_is_claimed_by_one_poller_only(durable: Durable, napping: Any) -> None:
    env = WorkflowTestEnvironment(durable)
    handle = napping.start()
    env.run_until_idle()
    env.clock.advance(10)
    first = env.store.claim_due_timers(claim_ms=CLAIM * 1000)
    assert [(t.kind, t.run_id, t.cid) for t in first] == [("timer", handle.run_id, "t1")]
    # Every other poller (worker) now finds nothing, however often it looks.
    assert env.store.claim_due_timers(claim_ms=CLAIM * 1000) == []
    assert env.runtime.timers.fire_due() == 0
    assert handle.status() == "running"


def test_acting_on_one_timer_twice_records_it_once_and_wakes_once(
    durable: Durable, napping: Any
) -> None:
    env = WorkflowTestEnvironment(durable)
    handle = napping.start()
    env.run_until_idle()
    env.clock.advance(10)
    (due,) = env.store.claim_due_timers(claim_ms=CLAIM * 1000)
    wakes = env.dispatcher.wakes
    env.runtime.timers._fire(due)  # two workers acting on the same timer...
    env.runtime.timers._fire(due)
    assert env.dispatcher.wakes == wakes + 1  # ...wake the run once
    assert env.result(handle) == "awake"
    assert count_per_cid(durable.history(handle.run_id), "timer_fired") == {"t1": 1}


def test_a_crash_between_recording_and_removing_a_timer_does_no_harm(
    durable: Durable, napping: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = WorkflowTestEnvironment(durable)
    handle = napping.start()
    env.run_until_idle()
    env.clock.advance(10)
    fail_once(monkeypatch, env.store, "remove_timer")
    with pytest.raises(ConnectionError):
        env.runtime.timers.fire_due()  # recorded timer_fired, then died before the remove
    assert count_per_cid(durable.history(handle.run_id), "timer_fired") == {"t1": 1}

    env.clock.advance(CLAIM)  # the dead poller's claim expires: the timer is due again
    assert env.runtime.timers.fire_due() == 1
    assert not env.store._timers  # acted on again (harmlessly), and removed this time
    assert env.result(handle) == "awake"
    assert count_per_cid(durable.history(handle.run_id), "timer_fired") == {"t1": 1}


def test_a_timer_whose_firing_fails_is_kept_and_fires_after_its_claim_expires(
    durable: Durable,
    napping: Any,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    env = WorkflowTestEnvironment(durable)
    handle = napping.start()
    env.run_until_idle()
    env.clock.advance(10)
    fail_once(monkeypatch, env.store, "record_outcome")
    with caplog.at_level(logging.ERROR, logger="durable_celery.timers"):
        env.run_until_idle()
    assert "will be retried" in caplog.text
    # Removed only after acting: had it been removed first, the run would sleep forever.
    assert len(env.store._timers) == 1
    assert handle.status() == "running"
    assert "timer_fired" not in kinds(durable.history(handle.run_id))

    env.advance(CLAIM)
    assert env.result(handle) == "awake"
    assert count_per_cid(durable.history(handle.run_id), "timer_fired") == {"t1": 1}


def test_a_timer_of_a_deleted_run_is_dropped(durable: Durable, napping: Any) -> None:
    env = WorkflowTestEnvironment(durable)
    handle = napping.start()
    env.run_until_idle()
    env.store.delete_run(handle.run_id)
    env.clock.advance(10)
    assert env.runtime.timers.fire_due() == 1
    assert not env.store._timers


@pytest.mark.parametrize("mode", ["inline", "dispatch"])
def test_a_step_retry_waits_in_a_durable_timer_not_in_a_message(
    durable: Durable, mode: str
) -> None:
    attempts: list[int] = []

    @durable.step(retries=1, backoff=3600, max_backoff=7200, jitter=False)
    def flaky() -> str:
        info = current_step()
        assert info is not None
        attempts.append(info.attempt)
        if info.attempt == 1:
            raise ConnectionError("down for maintenance")
        return "ok"

    @durable.workflow
    def flow() -> str:
        return flaky()

    env = WorkflowTestEnvironment(durable, step_execution=mode)
    handle = flow.start()
    env.run_until_idle()
    assert attempts == [1]
    assert not env.dispatcher.queue  # no message holds the retry (no countdown, no ETA)
    ((member, deadline),) = env.store._timers.items()
    retrying = only(durable.history(handle.run_id), "step_retrying")
    assert member.startswith(f'["retry","{handle.run_id}","s1@2",')
    assert deadline == retrying.millis + 3600 * 1000

    env.advance(3599)
    assert attempts == [1]
    env.advance(1)
    assert env.result(handle) == "ok"
    assert attempts == [1, 2]
    assert not env.store._timers


def test_a_retry_timer_fired_twice_does_not_run_a_settled_step_again(durable: Durable) -> None:
    attempts: list[int] = []

    @durable.step(retries=1, backoff=60, jitter=False)
    def flaky() -> str:
        info = current_step()
        assert info is not None
        attempts.append(info.attempt)
        if info.attempt == 1:
            raise ConnectionError("once")
        return "ok"

    @durable.workflow
    def flow() -> str:
        return flaky()

    env = WorkflowTestEnvironment(durable, step_execution="dispatch")
    handle = flow.start()
    env.run_until_idle()
    env.clock.advance(60)
    (due,) = env.store.claim_due_timers(claim_ms=CLAIM * 1000)
    env.runtime.timers._fire(due)
    assert env.result(handle) == "ok"
    env.runtime.timers._fire(due)  # a late duplicate, after the step settled
    env.run_until_idle()
    assert attempts == [1, 2]
