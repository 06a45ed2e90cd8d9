"""Every performance mechanism gives the same results and the same log with it on and off:
live workflows, one-hop continuation (with and without speculative continuation), the
hydration cache, the event cache, inline execution, and step inputs in messages (steps sent
before the append that finishes the pass)."""

from __future__ import annotations

from typing import Any

import pytest
from celery import Celery

from durable_celery import Durable, first, gather, sleep
from durable_celery.replay.events import Event
from durable_celery.testing import WorkflowTestEnvironment

SETTINGS: dict[str, dict[str, Any]] = {
    "everything on": {},
    "no live workflows": {"live_workflows": False},
    "no one-hop": {"one_hop": False},
    "one-hop": {"one_hop": True},
    "one-hop, no speculative continuation": {"one_hop": True, "speculative_continuation": False},
    "no hydration cache": {"hydration_cache_bytes": 1},
    "no event cache": {"event_cache_runs": 1},
    "no inputs in messages": {"message_input_limit": 0},
    "all off": {
        "live_workflows": False,
        "one_hop": False,
        "hydration_cache_bytes": 1,
        "event_cache_runs": 1,
        "message_input_limit": 0,
        "speculative_continuation": False,
    },
}


def shop() -> tuple[Durable, Any]:
    durable = Durable(Celery("t", broker="memory://"))

    @durable.step(retries=2, backoff=0)
    def price(item: str, attempt_box: list[int]) -> tuple[str, int]:
        return item, len(item) * 100

    @durable.step
    def total(prices: list[tuple[str, int]]) -> dict[str, int]:
        return {"sum": sum(p for _, p in prices), "n": len(prices)}

    @durable.workflow(name="shop.order")
    def order(items: list[str]) -> dict[str, Any]:
        prices = gather(*(price.defer(i, []) for i in items))
        summary = total(prices)
        summary["mutated"] = True  # a mutable result changed in one replay must not leak
        winner, _ = first(price.defer("fast", []), price.defer("slow", []))
        sleep(60)
        running = 0
        for p in prices:
            running = total([("acc", running), p])["sum"]
        return {"summary": total(prices), "winner": winner, "running": running}

    return durable, order


def shape(history: list[Event]) -> list[str]:
    """The log's entries without ids and timings, in a canonical order: a mechanism may change
    how completions interleave with new work (one-hop runs the next pass sooner), never what
    is recorded."""
    return sorted(
        repr((e.kind, e.cid, sorted((k, v) for k, v in e.meta.items() if k != "ms")))
        for e in history
    )


@pytest.mark.parametrize("mode", ["inline", "dispatch", "auto"])
def test_results_and_logs_are_the_same_with_each_mechanism_on_or_off(mode: str) -> None:
    outcomes = {}
    for name, settings in SETTINGS.items():
        durable, order = shop()
        env = WorkflowTestEnvironment(durable, step_execution=mode, **settings)
        handle = order.start(["book", "lamp", "mug"], run_id="r1")
        env.run_until_idle()
        env.advance(60)
        outcomes[name] = (env.result(handle), shape(durable.history(handle.run_id)))
    reference = outcomes["everything on"]
    assert reference[0]["summary"] == {"sum": 1100, "n": 3}
    for name, outcome in outcomes.items():
        assert outcome == reference, name
