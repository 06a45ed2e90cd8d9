"""Workflows several runtime test modules share."""

from __future__ import annotations

from typing import Any

from durable_celery import Durable, gather
from durable_celery.testing.local import LocalDispatcher, LocalEnvironment


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


class EagerWorker(LocalDispatcher):
    """Runs each step the moment it is sent: inside the pass that sends it, before that pass
    has appended."""

    env: LocalEnvironment

    def send_step(self, step: Any, run_id: str, cid: str, entry_id: str, attempt: int,
                  queue: str | None = None, payload: bytes | None = None,
                  identity: str | None = None) -> None:  # fmt: skip
        self.sent_steps += 1
        self.env.runtime.steps.execute(
            step.name, run_id, cid, entry_id, attempt, payload=payload, identity=identity
        )
