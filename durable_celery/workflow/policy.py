"""Retry policy of a step: exponential backoff with jitter, capped."""

from __future__ import annotations

import random
from dataclasses import dataclass

from ..errors import EncodingError, FatalError, RetryableError

__all__ = ["RetryPolicy"]


@dataclass(frozen=True)
class RetryPolicy:
    """``retries`` extra attempts after the first; delays ``backoff * 2**(n-1)`` seconds.

    Jitter (on by default) picks the delay uniformly in ``[d/2, d]`` so that many runs failing
    together do not retry in lockstep; ``RetryableError(after=s)`` asks for exactly ``s`` seconds.
    """

    retries: int = 3
    backoff: float = 1.0
    max_backoff: float = 600.0
    jitter: bool = True

    def __post_init__(self) -> None:
        if self.retries < 0:
            raise ValueError("retries must be 0 or more")
        if self.backoff < 0 or self.max_backoff < 0:
            raise ValueError("backoff and max_backoff must be 0 or more seconds")

    def should_retry(self, error: BaseException, attempt: int) -> bool:
        """``attempt`` is the attempt that just failed (1-based)."""
        if isinstance(error, (FatalError, EncodingError)) or not isinstance(error, Exception):
            return False
        return attempt <= self.retries

    def delay(self, error: BaseException, attempt: int, rng: random.Random | None = None) -> float:
        if isinstance(error, RetryableError) and error.after is not None:
            return max(0.0, float(error.after))
        delay = float(min(self.max_backoff, self.backoff * (2.0 ** (attempt - 1))))
        if self.jitter and delay > 0:
            delay = float((rng or random).uniform(delay / 2, delay))
        return delay
