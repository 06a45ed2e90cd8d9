"""The workflows whose recorded logs are kept under tests/histories/*.json.

Their names and code must keep replaying those logs: change them only together with a new saved
history (and keep the old one replaying, with patched() where the code changes).
"""

from __future__ import annotations

from typing import Any

from celery import Celery

from durable_celery import (
    Durable,
    RetryableError,
    current_step,
    first,
    gather,
    sleep,
    timer,
    wait_for_event,
)


def build() -> tuple[Durable, dict[str, Any]]:
    durable = Durable(Celery("histories", broker="memory://"))

    @durable.step(name="h.price", retries=2, backoff=0)
    def price(item: str) -> int:
        info = current_step()
        if item == "flaky" and info is not None and info.attempt == 1:
            raise RetryableError("try again", after=0)
        return len(item) * 100

    @durable.step(name="h.total")
    def total(prices: list[int]) -> dict[str, Any]:
        return {"sum": sum(prices), "count": len(prices), "items": tuple(prices)}

    @durable.workflow(name="h.checkout")
    def checkout(items: list[str]) -> dict[str, Any]:
        prices = gather(*(price.defer(i) for i in items))
        summary = total(prices)
        winner, _ = first(price.defer("fast"), timer(3600))
        sleep(60)
        decision = wait_for_event(f"review:{items[0]}", timeout=600)
        return {"summary": summary, "winner": winner, "decision": decision}

    return durable, {"checkout": checkout}
