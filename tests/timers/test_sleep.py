"""Durable sleeps on the virtual clock: what a sleep records, when it fires, what it holds.

``WorkflowTestEnvironment`` runs the real runtime on the memory store with a clock the test
moves, so a week-long sleep fires at once and every test here runs in milliseconds.
"""

from __future__ import annotations

import asyncio
import time
from datetime import datetime, timedelta, timezone

import pytest

from durable_celery import Durable, now, sleep, sleep_until
from durable_celery.testing import WorkflowTestEnvironment

from .support import count_per_cid, kinds, only

WEEK = 7 * 86400


def test_a_week_long_sleep_fires_when_the_clock_is_advanced_a_week(durable: Durable) -> None:
    @durable.workflow
    def reminder(who: str) -> str:
        sleep(timedelta(days=7))
        return f"remember {who}"

    env = WorkflowTestEnvironment(durable)
    started = time.monotonic()
    handle = reminder.start("ada")
    env.run_until_idle()
    env.advance(days=6, hours=23, minutes=59)
    assert handle.status() == "running"  # a minute short of a week: still asleep
    env.advance(minutes=1)
    assert env.result(handle) == "remember ada"
    assert time.monotonic() - started < 10  # a week of virtual time, no real waiting

    history = durable.history(handle.run_id)
    assert kinds(history) == ["run_started", "timer_started", "timer_fired", "run_completed"]
    started_entry, fired = only(history, "timer_started"), only(history, "timer_fired")
    assert started_entry.meta == {"seconds": float(WEEK)}
    assert fired.millis - started_entry.millis == WEEK * 1000


def test_env_advance_days_seven_fires_a_week_long_sleep_at_once(durable: Durable) -> None:
    @durable.workflow
    def nap() -> str:
        sleep(WEEK)
        return "awake"

    env = WorkflowTestEnvironment(durable)
    handle = nap.start()
    env.advance(days=7)
    assert handle.status() == "completed"
    assert env.result(handle) == "awake"


@pytest.mark.parametrize(
    ("duration", "seconds"),
    [
        (90, 90.0),
        (2.5, 2.5),
        (timedelta(minutes=5), 300.0),
        (timedelta(hours=1, milliseconds=500), 3600.5),
    ],
)
def test_sleep_takes_seconds_or_a_timedelta(
    durable: Durable, duration: float | timedelta, seconds: float
) -> None:
    @durable.workflow
    def nap(d: float | timedelta) -> str:
        sleep(d)
        return "done"

    env = WorkflowTestEnvironment(durable)
    handle = nap.start(duration)
    env.run_until_idle()
    assert only(durable.history(handle.run_id), "timer_started").meta == {"seconds": seconds}
    env.advance(seconds * 0.999)
    assert handle.status() == "running"
    env.advance(seconds * 0.002)
    assert env.result(handle) == "done"


def test_a_sleeping_run_holds_no_lease_no_queued_work_and_one_timer(durable: Durable) -> None:
    @durable.workflow
    def nap() -> None:
        sleep(3600)

    env = WorkflowTestEnvironment(durable)
    handle = nap.start()
    env.run_until_idle()
    # The pass ended: nothing queued, nobody holds the run, only a deadline in the store.
    assert handle.status() == "running"
    assert not env.dispatcher.queue
    assert env.store.lease_ttl_ms(handle.run_id) == 0
    assert not env.store.wake_pending(handle.run_id)
    ((member, deadline),) = env.store._timers.items()
    assert member == f'["timer","{handle.run_id}","t1",{{}}]'
    started = only(durable.history(handle.run_id), "timer_started")
    assert deadline == started.millis + 3600 * 1000


def test_now_is_the_log_time_and_moves_forward_across_a_sleep(durable: Durable) -> None:
    @durable.workflow
    def stamps() -> list[datetime]:
        before = now()
        sleep(timedelta(hours=2))
        return [before, now()]

    env = WorkflowTestEnvironment(durable)
    handle = stamps.start()
    env.advance(hours=3)
    before, after = env.result(handle)
    history = durable.history(handle.run_id)
    as_time = lambda ms: datetime.fromtimestamp(ms / 1000, tz=timezone.utc)  # noqa: E731
    assert before == as_time(history[0].millis)  # run_started
    assert after == as_time(only(history, "timer_fired").millis)
    assert before.tzinfo is not None and after - before >= timedelta(hours=2)


def test_sleep_until_an_aware_datetime_fires_at_that_instant(durable: Durable) -> None:
    @durable.workflow
    def wake_at(when: datetime) -> datetime:
        sleep_until(when)
        return now()

    env = WorkflowTestEnvironment(durable, start=1_800_000_000.0)
    tokyo = timezone(timedelta(hours=9))
    when = datetime.fromtimestamp(env.clock.now + 3600, tz=tokyo)
    handle = wake_at.start(when)
    env.run_until_idle()
    assert only(durable.history(handle.run_id), "timer_started").meta["seconds"] == 3600.0
    env.advance(3599)
    assert handle.status() == "running"
    env.advance(1)
    woke = env.result(handle)
    assert woke == when  # the same instant, whatever the timezone it was written in


def test_sleep_until_fires_at_its_instant_even_when_no_worker_ran_for_a_while(
    durable: Durable,
) -> None:
    """``now()`` inside the first pass is the run's start; the pass itself runs half an hour
    later (no worker was up). The deadline is still the instant asked for, not half an hour
    after it."""

    @durable.workflow
    def wake_at(when: datetime) -> datetime:
        sleep_until(when)
        return now()

    env = WorkflowTestEnvironment(durable, start=1_800_000_000.0)
    when = datetime.fromtimestamp(env.clock.now + 3600, tz=timezone.utc)
    handle = wake_at.start(when)
    env.clock.advance(1800)  # the first pass runs late
    env.run_until_idle()
    ((_, deadline),) = env.store._timers.items()
    assert deadline == int(when.timestamp() * 1000)
    env.advance(1799)
    assert handle.status() == "running"
    env.advance(1)
    assert env.result(handle) == when


def test_a_sleep_counts_from_when_the_workflow_reaches_it(durable: Durable) -> None:
    @durable.workflow
    def nap() -> datetime:
        sleep(3600)
        return now()

    env = WorkflowTestEnvironment(durable, start=1_800_000_000.0)
    handle = nap.start()
    env.clock.advance(1800)  # the first pass runs late: the hour starts then
    env.run_until_idle()
    env.advance(3599)
    assert handle.status() == "running"
    env.advance(1)
    assert env.result(handle).timestamp() == 1_800_000_000.0 + 1800 + 3600


@pytest.mark.parametrize("arg", [0, 0.0, timedelta(0)])
def test_sleeping_zero_seconds_returns_at_once_without_a_timer(
    durable: Durable, arg: float | timedelta
) -> None:
    @durable.workflow
    def nap(d: float | timedelta) -> str:
        sleep(d)
        return "done"

    env = WorkflowTestEnvironment(durable)
    handle = nap.start(arg)
    assert env.result(handle) == "done"
    assert kinds(durable.history(handle.run_id)) == ["run_started", "run_completed"]
    assert not env.store._timers


def test_sleep_until_a_past_instant_returns_at_once_without_a_timer(durable: Durable) -> None:
    @durable.workflow
    def wake_at(when: datetime) -> str:
        sleep_until(when)
        return "done"

    env = WorkflowTestEnvironment(durable)
    handle = wake_at.start(datetime(2001, 1, 1, tzinfo=timezone.utc))
    assert env.result(handle) == "done"
    assert "timer_started" not in kinds(durable.history(handle.run_id))


def test_sleeps_in_sequence_each_get_their_own_timer_fired_once(durable: Durable) -> None:
    @durable.workflow
    def naps() -> int:
        for _ in range(3):
            sleep(60)
        return 3

    env = WorkflowTestEnvironment(durable)
    handle = naps.start()
    for _ in range(3):
        env.advance(60)
    assert env.result(handle) == 3
    history = durable.history(handle.run_id)
    assert count_per_cid(history, "timer_fired") == {"t1": 1, "t2": 1, "t3": 1}
    assert not env.store._timers  # every fired timer was removed


def test_an_async_workflow_sleeps_on_the_same_durable_timers(durable: Durable) -> None:
    @durable.workflow
    async def nap() -> list[datetime]:
        before = now()
        await sleep(timedelta(days=1))
        await asyncio.sleep(3600)  # the deterministic loop turns it into a durable timer too
        return [before, now()]

    env = WorkflowTestEnvironment(durable)
    handle = nap.start()
    env.advance(days=1)
    assert handle.status() == "running"
    env.advance(hours=1)
    before, after = env.result(handle)
    assert after - before == timedelta(days=1, hours=1)
    history = durable.history(handle.run_id)
    assert [e.meta["seconds"] for e in history if e.kind == "timer_started"] == [86400.0, 3600.0]


def test_a_sleep_until_restarted_after_an_interrupted_pass_keeps_its_instant(
    durable: Durable,
) -> None:
    """The first pass runs half an hour late and dies after recording the timer, before
    registering it. The pass that restarts it registers the instant asked for, not an hour
    after the late entry."""

    @durable.workflow
    def wake_at(when: datetime) -> datetime:
        sleep_until(when)
        return now()

    env = WorkflowTestEnvironment(durable, start=1_800_000_000.0)
    when = datetime.fromtimestamp(env.clock.now + 3600, tz=timezone.utc)
    handle = wake_at.start(when)
    env.clock.advance(1800)
    start = env.runtime.starter.start

    def dies(*args: object) -> None:
        raise SystemExit("the worker died after the append")

    env.runtime.starter.start = dies  # type: ignore[method-assign]
    with pytest.raises(SystemExit):
        env.run_until_idle()
    assert not env.store._timers and kinds(durable.history(handle.run_id))[-1] == "timer_started"
    env.runtime.starter.start = start  # type: ignore[method-assign]
    env.clock.advance(60)
    env.dispatcher.wake(handle.run_id)  # the recovery sweep's wake
    env.run_until_idle()
    ((_, deadline),) = env.store._timers.items()
    assert deadline == int(when.timestamp() * 1000)
    env.advance(3600 - 1800 - 60)
    assert env.result(handle) == when
