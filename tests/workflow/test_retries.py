"""Step retries and step errors: what the log records and what the workflow sees."""

from __future__ import annotations

import itertools
from collections import Counter
from typing import Any

import pytest

from durable_celery import Durable, EncodingError, FatalError, RetryableError, StepError
from durable_celery.store import MemoryEventStore
from durable_celery.testing.local import LocalEnvironment

MODES = ("inline", "dispatch")


class InsufficientFunds(Exception):
    """A user's error type, importable by path: it crosses the log as itself."""


class NeedsTwoArguments(Exception):
    """Rebuilding it from its args fails: ``__init__`` wants more than ``args`` holds."""

    def __init__(self, account: str, cents: int) -> None:
        super().__init__(f"{account} is short of {cents} cents")
        self.account = account
        self.cents = cents


class FakeClock:
    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


def kinds(durable: Durable, run_id: str) -> Counter[str]:
    return Counter(e.kind for e in durable.history(run_id))


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("failures", [0, 1, 3])
def test_a_step_failing_fewer_times_than_it_may_retry_completes(
    durable: Durable, mode: str, failures: int
) -> None:
    attempts: list[int] = []

    @durable.step(retries=3, backoff=0)
    def flaky(x: int) -> int:
        attempts.append(x)
        if len(attempts) <= failures:
            raise ConnectionError(f"attempt {len(attempts)}")
        return x * 2

    @durable.workflow
    def wf(x: int) -> int:
        return flaky(x)

    env = LocalEnvironment(durable, step_execution=mode)
    handle = wf.start(21)
    assert env.result(handle) == 42
    assert len(attempts) == failures + 1
    history = durable.history(handle.run_id)
    retrying = [e for e in history if e.kind == "step_retrying"]
    assert [e.meta["attempt"] for e in retrying] == list(range(1, failures + 1))
    assert all(e.meta["error"] == "builtins.ConnectionError" for e in retrying)
    (completed,) = [e for e in history if e.kind == "step_completed"]
    assert completed.meta["attempt"] == failures + 1
    assert kinds(durable, handle.run_id)["step_failed"] == 0


@pytest.mark.parametrize("mode", MODES)
def test_exhausted_retries_raise_the_original_error_type_at_the_call_site(
    durable: Durable, mode: str
) -> None:
    attempts: list[int] = []

    @durable.step(retries=2, backoff=0)
    def always_fails(x: int) -> int:
        attempts.append(x)
        raise ValueError(f"bad value {x}")

    @durable.workflow
    def wf(x: int) -> str:
        try:
            always_fails(x)
        except ValueError as exc:
            return f"recovered from {type(exc).__name__}: {exc}"
        return "no error"

    env = LocalEnvironment(durable, step_execution=mode)
    handle = wf.start(7)
    assert env.result(handle) == "recovered from ValueError: bad value 7"
    assert attempts == [7, 7, 7]
    counts = kinds(durable, handle.run_id)
    assert (counts["step_retrying"], counts["step_failed"]) == (2, 1)


def test_an_uncaught_step_error_fails_the_run_with_the_original_type(durable: Durable) -> None:
    @durable.step(retries=1, backoff=0)
    def lookup(key: str) -> int:
        raise KeyError(key)

    @durable.workflow
    def wf(key: str) -> int:
        return lookup(key)

    env = LocalEnvironment(durable, step_execution="dispatch")
    handle = wf.start("missing")
    with pytest.raises(KeyError, match="missing"):
        env.result(handle)
    assert handle.status() == "failed"
    (failed,) = [e for e in durable.history(handle.run_id) if e.kind == "run_failed"]
    assert failed.meta["error"] == "builtins.KeyError"


def test_a_custom_exception_class_importable_by_path_is_rebuilt_as_itself(
    durable: Durable,
) -> None:
    seen: list[Any] = []

    @durable.step(retries=0)
    def charge(cents: int) -> None:
        raise InsufficientFunds(f"cannot charge {cents}")

    @durable.workflow
    def wf(cents: int) -> None:
        try:
            charge(cents)
        except InsufficientFunds as exc:
            seen.append(exc)
            raise

    env = LocalEnvironment(durable, step_execution="dispatch")
    handle = wf.start(1999)
    with pytest.raises(InsufficientFunds, match=r"^cannot charge 1999$") as caught:
        env.result(handle)
    assert type(caught.value) is InsufficientFunds
    assert len(seen) == 1 and type(seen[0]) is InsufficientFunds


def test_an_exception_class_defined_inside_a_function_arrives_as_step_error(
    durable: Durable,
) -> None:
    class LocalError(Exception):
        pass

    @durable.step(retries=0)
    def explode() -> None:
        raise LocalError("kaboom")

    @durable.workflow
    def wf() -> None:
        explode()

    env = LocalEnvironment(durable, step_execution="dispatch")
    with pytest.raises(StepError) as caught:
        env.result(wf.start())
    error = caught.value
    assert error.type_name.endswith("LocalError")
    assert error.message == "kaboom"
    assert 'raise LocalError("kaboom")' in error.traceback
    assert __file__ in error.traceback


def test_an_exception_that_needs_more_init_arguments_than_its_args_arrives_as_step_error(
    durable: Durable,
) -> None:
    @durable.step(retries=0)
    def debit() -> None:
        raise NeedsTwoArguments("acct-1", 250)

    @durable.workflow
    def wf() -> str:
        try:
            debit()
        except StepError as exc:
            return f"{exc.type_name}|{exc.message}"
        return "no error"

    env = LocalEnvironment(durable, step_execution="dispatch")
    assert env.result(wf.start()) == (
        f"{NeedsTwoArguments.__module__}.NeedsTwoArguments|acct-1 is short of 250 cents"
    )


@pytest.mark.parametrize("mode", MODES)
def test_fatal_error_stops_retrying_after_the_first_attempt(durable: Durable, mode: str) -> None:
    attempts: list[int] = []

    @durable.step(retries=5, backoff=0)
    def reject() -> None:
        attempts.append(1)
        raise FatalError("card declined")

    @durable.workflow
    def wf() -> None:
        reject()

    env = LocalEnvironment(durable, step_execution=mode)
    handle = wf.start()
    with pytest.raises(FatalError, match="card declined"):
        env.result(handle)
    assert attempts == [1]
    counts = kinds(durable, handle.run_id)
    assert (counts["step_retrying"], counts["step_failed"]) == (0, 1)


def test_retryable_error_after_sets_the_delay_before_the_next_attempt(durable: Durable) -> None:
    attempts: list[float] = []
    clock = FakeClock()

    @durable.step(retries=3, backoff=1000)
    def rate_limited() -> str:
        attempts.append(clock.now)
        if len(attempts) == 1:
            raise RetryableError("429 Too Many Requests", after=7)
        return "ok"

    @durable.workflow
    def wf() -> str:
        return rate_limited()

    env = LocalEnvironment(durable, store=MemoryEventStore(clock=clock), step_execution="dispatch")
    handle = wf.start()
    env.run_until_idle()
    (retrying,) = [e for e in durable.history(handle.run_id) if e.kind == "step_retrying"]
    assert retrying.meta["delay"] == 7.0  # not the policy's 1000 s backoff

    clock.now += 6.9
    env.run_until_idle()
    assert len(attempts) == 1 and handle.status() == "running"

    clock.now += 0.2
    assert env.result(handle) == "ok"
    assert attempts[1] - attempts[0] == pytest.approx(7.1)


def test_backoff_doubles_between_attempts_when_jitter_is_off(durable: Durable) -> None:
    clock = FakeClock()
    attempts: list[float] = []

    @durable.step(retries=3, backoff=2, jitter=False)
    def unstable() -> str:
        attempts.append(clock.now)
        if len(attempts) < 4:
            raise TimeoutError("slow upstream")
        return "done"

    @durable.workflow
    def wf() -> str:
        return unstable()

    env = LocalEnvironment(durable, store=MemoryEventStore(clock=clock), step_execution="inline")
    handle = wf.start()
    for _ in range(20):
        env.run_until_idle()
        if handle.status() != "running":
            break
        clock.now += 1
    assert handle.result(timeout=0) == "done"
    delays = [e.meta["delay"] for e in durable.history(handle.run_id) if e.kind == "step_retrying"]
    assert delays == [2.0, 4.0, 8.0]
    gaps = [later - earlier for earlier, later in itertools.pairwise(attempts)]
    assert gaps == [2.0, 4.0, 8.0]


def test_a_step_result_that_cannot_be_stored_fails_the_step_without_retrying(
    durable: Durable,
) -> None:
    attempts: list[int] = []

    @durable.step(retries=3, backoff=0)
    def opaque() -> object:
        attempts.append(1)
        return object()

    @durable.workflow
    def wf() -> object:
        return opaque()

    env = LocalEnvironment(durable, step_execution="dispatch")
    handle = wf.start()
    with pytest.raises(EncodingError, match=r"result of step .*opaque.* cannot be stored"):
        env.result(handle)
    assert attempts == [1]
