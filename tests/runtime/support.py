"""Workflows several runtime test modules share."""

from __future__ import annotations

from typing import Any

from durable_celery import Durable, gather


def gather_of_squares(durable: Durable, runs: list[int]) -> Any:
    """``squares(n)``: a gather of ``n`` steps ``square(i)``; each execution appends ``i`` to
    ``runs``."""

    @durable.step
    def square(x: int) -> int:
        runs.append(x)
        return x * x

    @durable.workflow
    def squares(n: int) -> list[int]:
        return gather(*(square.defer(i) for i in range(n)))

    return squares
