"""Bad sleeps are refused at the call site: the run fails with an error that says what to pass.

Nothing is recorded for the refused call (no timer is started), so a fixed deploy is never
confused by a half-recorded sleep.
"""

from __future__ import annotations

import re
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest

from durable_celery import Durable, receive, sleep, sleep_until, timer, wait_for_event
from durable_celery.testing import WorkflowTestEnvironment

from .support import kinds

NAN = float("nan")
INF = float("inf")


def failed_with(durable: Durable, env: WorkflowTestEnvironment, handle: Any) -> BaseException:
    """Run until idle and return the error the run failed with; no timer may be registered."""
    with pytest.raises(Exception) as caught:
        env.result(handle)
    assert handle.status() == "failed"
    assert "timer_started" not in kinds(durable.history(handle.run_id))
    assert not env.store._timers
    return caught.value


@pytest.mark.parametrize(
    ("value", "error", "message"),
    [
        (-1, ValueError, r"sleep\(\): a duration cannot be negative \(got -1s\)"),
        (-0.5, ValueError, r"cannot be negative \(got -0.5s\)"),
        (timedelta(seconds=-30), ValueError, r"cannot be negative \(got -30s\)"),
        (NAN, ValueError, r"sleep\(\): nan is not a finite duration"),
        (INF, ValueError, r"sleep\(\): inf is not a finite duration"),
        (-INF, ValueError, r"is not a finite duration"),
        (
            "10",
            TypeError,
            r"sleep\(\) takes seconds \(int or float\) or a datetime.timedelta, "
            r"not str",
        ),
        (None, TypeError, r"not NoneType"),
        (True, TypeError, r"not bool"),  # a bool is an int to Python, never a duration here
        ([5], TypeError, r"not list"),
        (Decimal("1.5"), TypeError, r"not Decimal"),  # not a float: pass float(d) explicitly
    ],
)
def test_a_bad_sleep_duration_fails_the_run_with_a_message_saying_what_to_pass(
    durable: Durable, value: Any, error: type[Exception], message: str
) -> None:
    @durable.workflow
    def nap(d: Any) -> str:
        sleep(d)
        return "slept"

    env = WorkflowTestEnvironment(durable)
    raised = failed_with(durable, env, nap.start(value))
    assert type(raised) is error
    assert re.search(message, str(raised)), str(raised)


def test_the_error_is_raised_where_sleep_is_called_so_the_workflow_can_handle_it(
    durable: Durable,
) -> None:
    @durable.workflow
    def careful(d: Any) -> str:
        try:
            sleep(d)
        except ValueError as exc:
            return f"refused: {exc}"
        return "slept"

    env = WorkflowTestEnvironment(durable)
    handle = careful.start(NAN)
    assert env.result(handle) == "refused: sleep(): nan is not a finite duration"


def test_a_naive_datetime_is_refused_with_the_fix_in_the_message(durable: Durable) -> None:
    @durable.workflow
    def wake_at(when: datetime) -> str:
        sleep_until(when)
        return "woke"

    env = WorkflowTestEnvironment(durable)
    raised = failed_with(durable, env, wake_at.start(datetime(2030, 1, 1, 9, 0)))
    assert isinstance(raised, ValueError)
    assert "sleep_until() needs an aware datetime" in str(raised)
    assert "tzinfo=timezone.utc" in str(raised)  # names the fix


def test_refusing_naive_datetimes_is_a_documented_choice() -> None:
    doc = sleep_until.__doc__ or ""
    assert "Naive datetimes are refused" in doc
    assert "timezone" in doc  # and why: a worker's local timezone is not the workflow's


@pytest.mark.parametrize("value", ["2030-01-01T00:00:00Z", 1_900_000_000, date(2030, 1, 1)])
def test_sleep_until_takes_only_a_datetime(durable: Durable, value: Any) -> None:
    @durable.workflow
    def wake_at(when: Any) -> str:
        sleep_until(when)
        return "woke"

    env = WorkflowTestEnvironment(durable)
    raised = failed_with(durable, env, wake_at.start(value))
    assert isinstance(raised, TypeError)
    assert f"sleep_until() takes a datetime, not {type(value).__name__}" == str(raised)


def test_an_aware_datetime_in_any_timezone_is_accepted(durable: Durable) -> None:
    @durable.workflow
    def wake_at(when: datetime) -> str:
        sleep_until(when)
        return "woke"

    env = WorkflowTestEnvironment(durable)
    when = datetime.fromtimestamp(env.clock.now + 60, tz=timezone(timedelta(hours=-7)))
    handle = wake_at.start(when)
    env.advance(61)
    assert env.result(handle) == "woke"


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: timer(-1), r"timer\(\): a duration cannot be negative"),
        (
            lambda: wait_for_event("k", timeout=-5),
            r"wait_for_event\(timeout=...\): a duration "
            r"cannot be negative",
        ),
        (lambda: wait_for_event("k", timeout=NAN), r"not a finite duration"),
        (lambda: receive("go", timeout=-1), r"receive\(timeout=...\): a duration cannot be"),
    ],
)
def test_other_durations_are_checked_the_same_way(
    durable: Durable, call: Any, message: str
) -> None:
    @durable.workflow
    def bad() -> None:
        call()

    env = WorkflowTestEnvironment(durable)
    raised = failed_with(durable, env, bad.start())
    assert isinstance(raised, ValueError)
    assert re.search(message, str(raised)), str(raised)


@pytest.mark.parametrize("timeout", ["60", [1]])
def test_a_non_numeric_timeout_is_a_type_error(durable: Durable, timeout: Any) -> None:
    @durable.workflow
    def bad(t: Any) -> None:
        wait_for_event("k", timeout=t)

    env = WorkflowTestEnvironment(durable)
    raised = failed_with(durable, env, bad.start(timeout))
    assert isinstance(raised, TypeError)
    assert "takes seconds (int or float) or a datetime.timedelta" in str(raised)
