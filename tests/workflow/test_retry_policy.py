"""RetryPolicy: which errors retry, and how long to wait."""

from __future__ import annotations

import random

import pytest

from durable_celery import EncodingError, FatalError, RetryableError
from durable_celery.workflow.policy import RetryPolicy


@pytest.mark.parametrize(
    ("error", "attempt", "retries"),
    [
        (ValueError("x"), 1, True),
        (ValueError("x"), 3, True),
        (ValueError("x"), 4, False),
        (FatalError("no"), 1, False),
        (EncodingError("no"), 1, False),
        (RetryableError("again"), 3, True),
        (KeyboardInterrupt(), 1, False),
    ],
)
def test_should_retry_allows_ordinary_errors_up_to_the_retry_count_only(
    error: BaseException, attempt: int, retries: bool
) -> None:
    assert RetryPolicy(retries=3).should_retry(error, attempt) is retries


def test_delays_double_from_the_backoff_and_stop_at_the_cap() -> None:
    policy = RetryPolicy(retries=10, backoff=1.5, max_backoff=10, jitter=False)
    delays = [policy.delay(ValueError(), attempt) for attempt in range(1, 6)]
    assert delays == [1.5, 3.0, 6.0, 10, 10]


def test_jitter_keeps_each_delay_between_half_and_the_full_backoff() -> None:
    policy = RetryPolicy(retries=10, backoff=4, jitter=True)
    rng = random.Random(7)
    delays = [policy.delay(ValueError(), 2, rng) for _ in range(200)]
    assert all(4.0 <= d <= 8.0 for d in delays)
    assert len(set(delays)) > 100  # actually spread out, not a constant


def test_retryable_error_after_overrides_backoff_and_jitter() -> None:
    policy = RetryPolicy(retries=3, backoff=100, jitter=True)
    assert policy.delay(RetryableError("later", after=2.5), 3) == 2.5
    assert policy.delay(RetryableError("now", after=-1), 1) == 0.0


@pytest.mark.parametrize("options", [{"retries": -1}, {"backoff": -0.1}, {"max_backoff": -1}])
def test_negative_settings_are_refused(options: dict[str, float]) -> None:
    with pytest.raises(ValueError, match="0 or more"):
        RetryPolicy(**options)  # type: ignore[arg-type]
