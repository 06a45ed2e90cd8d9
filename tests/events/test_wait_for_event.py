"""wait_for_event(key, timeout) and durable.send_event(key, payload) on the virtual clock.

A wait registers a hook (key -> run and correlation id) in the store, so a sender anywhere finds
the run without a worker; delivery is an append-once of the wait's ``event_received`` entry.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest

from durable_celery import (
    Durable,
    EventKeyInUse,
    EventNotDelivered,
    wait_for_event,
)
from durable_celery.testing import WorkflowTestEnvironment

from .support import kinds, of_kind


@pytest.fixture
def review(durable: Durable) -> Any:
    @durable.workflow(name="review")
    def review(order: str, timeout: float | None = None) -> Any:
        return wait_for_event(f"review:{order}", timeout=timeout)

    return review


def test_a_waiting_run_gets_the_payload_sent_to_its_key(durable: Durable, review: Any) -> None:
    env = WorkflowTestEnvironment(durable)
    handle = review.start("o-1")
    env.run_until_idle()
    assert handle.status() == "running"
    assert env.store.get_hook("review:o-1") == f"{handle.run_id}\ne1"
    assert not env.dispatcher.queue and env.store.lease_ttl_ms(handle.run_id) == 0

    payload = {
        "approved": True,
        "amount": Decimal("19.99"),
        "at": datetime(2030, 1, 1, tzinfo=timezone.utc),
    }
    assert durable.send_event("review:o-1", payload) is True
    assert env.result(handle) == payload
    assert env.store.get_hook("review:o-1") is None  # delivered: the hook is gone
    history = durable.history(handle.run_id)
    assert kinds(history) == ["run_started", "event_awaited", "event_received", "run_completed"]
    (received,) = of_kind(history, "event_received")
    assert (received.cid, received.meta) == ("e1", {"key": "review:o-1"})


def test_without_a_timeout_a_wait_lasts_as_long_as_it_takes(durable: Durable, review: Any) -> None:
    env = WorkflowTestEnvironment(durable)
    handle = review.start("o-1")
    env.advance(days=365)
    assert handle.status() == "running"
    assert not env.store._timers  # no timeout timer at all
    durable.send_event("review:o-1", "finally")
    assert env.result(handle) == "finally"


def test_a_none_payload_is_delivered_as_none(durable: Durable, review: Any) -> None:
    env = WorkflowTestEnvironment(durable)
    handle = review.start("o-1")
    env.run_until_idle()
    assert durable.send_event("review:o-1") is True
    assert env.result(handle) is None
    (received,) = of_kind(durable.history(handle.run_id), "event_received")
    assert "timeout" not in received.meta  # told apart from a timeout by the log


def test_a_wait_times_out_to_none_and_ignores_an_event_arriving_later(
    durable: Durable, review: Any
) -> None:
    env = WorkflowTestEnvironment(durable)
    handle = review.start("o-1", timeout=3600)
    env.advance(3599)
    assert handle.status() == "running"
    env.advance(1)
    assert env.result(handle) is None

    with pytest.raises(EventNotDelivered, match="no run is waiting for event 'review:o-1'"):
        durable.send_event("review:o-1", {"approved": True})
    assert env.result(handle) is None
    history = durable.history(handle.run_id)
    (received,) = of_kind(history, "event_received")
    assert received.cid == "e1"
    assert received.meta == {"key": "review:o-1", "timeout": True}
    assert received.payload is None
    assert env.store.get_hook("review:o-1") is None


def test_an_event_before_the_timeout_wins_and_the_timeout_then_does_nothing(
    durable: Durable, review: Any
) -> None:
    env = WorkflowTestEnvironment(durable)
    handle = review.start("o-1", timeout=timedelta(hours=1))
    env.advance(minutes=59)
    durable.send_event("review:o-1", "just in time")
    env.advance(hours=2)  # the timeout's deadline passes
    assert env.result(handle) == "just in time"
    (received,) = of_kind(durable.history(handle.run_id), "event_received")
    assert "timeout" not in received.meta
    assert not env.store._timers  # the timeout timer fired into nothing and was removed


def test_a_timeout_racing_a_send_delivers_exactly_one_outcome(
    durable: Durable, review: Any
) -> None:
    env = WorkflowTestEnvironment(durable)
    handle = review.start("o-1", timeout=60)
    env.run_until_idle()
    env.clock.advance(60)
    env.runtime.timers.fire_due()  # the timeout lands first (its pass has not run yet)...
    with pytest.raises(EventNotDelivered):
        durable.send_event("review:o-1", "too late")  # ...so the send finds no waiter
    assert env.result(handle) is None
    assert len(of_kind(durable.history(handle.run_id), "event_received")) == 1


def test_a_second_live_run_waiting_on_the_same_key_gets_event_key_in_use(
    durable: Durable, review: Any
) -> None:
    env = WorkflowTestEnvironment(durable)
    first = review.start("o-1")
    env.run_until_idle()
    second = review.start("o-1")
    with pytest.raises(EventKeyInUse) as caught:
        env.result(second)
    message = str(caught.value)
    assert f"run {first.run_id} already waits for event 'review:o-1'" in message
    assert "include something unique to the run in the key" in message  # what to do
    assert second.status() == "failed"

    # The first run keeps its claim on the key and gets the event.
    assert env.store.get_hook("review:o-1") == f"{first.run_id}\ne1"
    durable.send_event("review:o-1", "yours")
    assert env.result(first) == "yours"


def test_event_key_in_use_is_raised_at_the_wait_so_the_workflow_may_handle_it(
    durable: Durable, review: Any
) -> None:
    @durable.workflow(name="polite")
    def polite(key: str) -> str:
        try:
            return str(wait_for_event(key))
        except EventKeyInUse:
            return "someone else is waiting"

    env = WorkflowTestEnvironment(durable)
    review.start("o-1")
    env.run_until_idle()
    assert env.result(polite.start("review:o-1")) == "someone else is waiting"


def test_a_key_is_free_again_once_its_waiter_has_finished(durable: Durable, review: Any) -> None:
    env = WorkflowTestEnvironment(durable)
    first = review.start("o-1", timeout=60)
    env.advance(60)
    assert env.result(first) is None  # timed out: no longer waiting
    second = review.start("o-1")
    env.run_until_idle()
    durable.send_event("review:o-1", "second")
    assert env.result(second) == "second"


def test_a_stale_hook_of_a_finished_run_does_not_block_a_new_wait(
    durable: Durable, review: Any
) -> None:
    env = WorkflowTestEnvironment(durable)
    first = review.start("o-1")
    env.run_until_idle()
    first.cancel()
    env.run_until_idle()
    assert first.status() == "cancelled"
    second = review.start("o-1")  # the cancelled run's hook is still there: it is replaced
    env.run_until_idle()
    assert env.store.get_hook("review:o-1") == f"{second.run_id}\ne1"
    durable.send_event("review:o-1", "ok")
    assert env.result(second) == "ok"


def test_one_run_may_wait_on_one_key_again_after_each_event(durable: Durable) -> None:
    @durable.workflow(name="collect")
    def collect(n: int) -> list[Any]:
        return [wait_for_event("ticks") for _ in range(n)]

    env = WorkflowTestEnvironment(durable)
    handle = collect.start(3)
    for tick in range(3):
        env.run_until_idle()
        durable.send_event("ticks", tick)
    assert env.result(handle) == [0, 1, 2]


@pytest.mark.parametrize("key", ["", None, 42])
def test_a_bad_key_is_refused_by_both_sides(durable: Durable, key: Any) -> None:
    @durable.workflow(name="waiter")
    def waiter(k: Any) -> Any:
        return wait_for_event(k)

    env = WorkflowTestEnvironment(durable)
    with pytest.raises(TypeError, match="wait_for_event\\(\\) needs a non-empty string key"):
        env.result(waiter.start(key))
    with pytest.raises(TypeError, match="send_event\\(\\) needs a non-empty string key"):
        durable.send_event(key, "x")


def test_an_async_workflow_awaits_an_event_or_its_timeout(durable: Durable) -> None:
    @durable.workflow(name="async_review")
    async def async_review(order: str) -> list[Any]:
        first = await wait_for_event(f"review:{order}")
        second = await wait_for_event(f"recheck:{order}", timeout=60)
        return [first, second]

    env = WorkflowTestEnvironment(durable)
    handle = async_review.start("o-1")
    env.run_until_idle()
    durable.send_event("review:o-1", "ok")
    env.advance(60)
    assert env.result(handle) == ["ok", None]
