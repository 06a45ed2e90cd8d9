"""Events sent before anyone waits (buffer=True, with a TTL) and resent events (dedupe_id).

Expiry follows the store's clock, so the TTL is tested on the virtual clock, not by sleeping.
"""

from __future__ import annotations

from typing import Any

import pytest

from durable_celery import Durable, EventNotDelivered, wait_for_event
from durable_celery.testing import WorkflowTestEnvironment

from .support import of_kind


@pytest.fixture
def waiter(durable: Durable) -> Any:
    @durable.workflow(name="waiter")
    def waiter(key: str, times: int = 1, timeout: float | None = None) -> list[Any]:
        return [wait_for_event(key, timeout=timeout) for _ in range(times)]

    return waiter


def test_an_event_nobody_waits_for_is_refused_and_not_kept(durable: Durable, waiter: Any) -> None:
    env = WorkflowTestEnvironment(durable)
    with pytest.raises(EventNotDelivered) as caught:
        durable.send_event("k", "early")
    assert "send it with buffer=True" in str(caught.value)  # says what to do
    handle = waiter.start("k", timeout=60)
    env.advance(60)
    assert env.result(handle) == [None]  # it was not kept for this wait


def test_a_buffered_event_is_kept_for_the_next_wait(durable: Durable, waiter: Any) -> None:
    env = WorkflowTestEnvironment(durable)
    assert durable.send_event("k", {"early": True}, buffer=True) is True
    handle = waiter.start("k")
    assert env.result(handle) == [{"early": True}]  # taken at the wait, no second pass needed
    (received,) = of_kind(durable.history(handle.run_id), "event_received")
    assert received.meta == {"key": "k", "buffered": True}
    assert env.store.get_hook("k") is None
    assert env.store.claim_buffered_event("k", "another\ne1") is None  # taken, not copied


def test_a_buffered_event_outlives_a_pass_that_dies_before_recording_it(
    durable: Durable, waiter: Any
) -> None:
    """The pass claims the event, then dies before its append: the event is neither lost nor
    given to another waiter; the replayed wait claims it again and records it."""
    env = WorkflowTestEnvironment(durable)
    durable.send_event("k", "kept", buffer=True)
    handle = waiter.start("k", timeout=60)
    append = env.store.append_fenced_and_read

    def dies(*args: Any, **kwargs: Any) -> Any:
        raise SystemExit("the worker died before its append")

    env.store.append_fenced_and_read = dies  # type: ignore[method-assign]
    with pytest.raises(SystemExit):
        env.run_until_idle()
    env.store.append_fenced_and_read = append  # type: ignore[method-assign]
    assert of_kind(durable.history(handle.run_id), "event_received") == []
    assert env.store.claim_buffered_event("k", "another\ne1") is None  # not for anyone else
    env.dispatcher.wake(handle.run_id)  # the recovery sweep's wake
    env.advance(60)
    assert env.result(handle) == ["kept"]
    (received,) = of_kind(durable.history(handle.run_id), "event_received")
    assert received.meta == {"key": "k", "buffered": True}
    assert env.store._buffers == {}  # settled once recorded


def test_buffered_events_are_taken_in_the_order_they_were_sent(
    durable: Durable, waiter: Any
) -> None:
    env = WorkflowTestEnvironment(durable)
    for n in range(3):
        durable.send_event("k", n, buffer=True)
    handle = waiter.start("k", times=4, timeout=60)
    env.advance(60)
    assert env.result(handle) == [0, 1, 2, None]  # each once, in order; then nothing


def test_buffer_true_still_delivers_straight_to_a_waiting_run(
    durable: Durable, waiter: Any
) -> None:
    env = WorkflowTestEnvironment(durable)
    handle = waiter.start("k")
    env.run_until_idle()
    durable.send_event("k", "direct", buffer=True)
    assert env.result(handle) == ["direct"]
    assert env.store.claim_buffered_event("k", "another\ne1") is None


@pytest.mark.parametrize(("waited", "delivered"), [(59, True), (61, False)])
def test_a_buffered_event_expires_after_its_ttl(
    durable: Durable, waiter: Any, waited: float, delivered: bool
) -> None:
    env = WorkflowTestEnvironment(durable)
    durable.send_event("k", "perishable", buffer=True, buffer_ttl=60)
    env.advance(waited)
    handle = waiter.start("k", timeout=10)
    env.advance(10)
    assert env.result(handle) == (["perishable"] if delivered else [None])


def test_the_default_buffer_ttl_is_a_day(durable: Durable, waiter: Any) -> None:
    env = WorkflowTestEnvironment(durable)
    durable.send_event("kept", "a", buffer=True)
    durable.send_event("gone", "b", buffer=True)
    env.advance(hours=23)
    kept = waiter.start("kept")
    env.run_until_idle()
    env.advance(hours=2)
    gone = waiter.start("gone", timeout=1)
    env.advance(1)
    assert env.result(kept) == ["a"]
    assert env.result(gone) == [None]


def test_an_event_sent_twice_with_one_dedupe_id_is_delivered_once(
    durable: Durable, waiter: Any
) -> None:
    env = WorkflowTestEnvironment(durable)
    handle = waiter.start("k", times=2, timeout=300)
    env.run_until_idle()
    assert durable.send_event("k", "first", dedupe_id="msg-1") is True
    env.run_until_idle()  # the run now waits on "k" a second time
    assert durable.send_event("k", "resent", dedupe_id="msg-1") is False  # dropped
    env.advance(300)
    assert env.result(handle) == ["first", None]
    received = of_kind(durable.history(handle.run_id), "event_received")
    assert [e.meta.get("dedupe") for e in received] == ["msg-1", None]


def test_a_buffered_event_sent_twice_with_one_dedupe_id_is_kept_once(
    durable: Durable, waiter: Any
) -> None:
    env = WorkflowTestEnvironment(durable)
    assert durable.send_event("k", "once", dedupe_id="d", buffer=True) is True
    assert durable.send_event("k", "once", dedupe_id="d", buffer=True) is False
    handle = waiter.start("k", times=2, timeout=60)
    env.advance(60)
    assert env.result(handle) == ["once", None]


def test_distinct_dedupe_ids_are_distinct_events(durable: Durable, waiter: Any) -> None:
    env = WorkflowTestEnvironment(durable)
    durable.send_event("k", 1, dedupe_id="a", buffer=True)
    durable.send_event("k", 2, dedupe_id="b", buffer=True)
    handle = waiter.start("k", times=2)
    assert env.result(handle) == [1, 2]


def test_a_dedupe_id_is_remembered_for_the_buffer_ttl(durable: Durable, waiter: Any) -> None:
    env = WorkflowTestEnvironment(durable)
    handle = waiter.start("k", times=2)
    env.run_until_idle()
    durable.send_event("k", "first", dedupe_id="d", buffer_ttl=600)
    env.advance(599)
    assert durable.send_event("k", "again", dedupe_id="d", buffer_ttl=600) is False
    env.advance(2)
    assert durable.send_event("k", "again", dedupe_id="d", buffer_ttl=600) is True
    assert env.result(handle) == ["first", "again"]


def test_a_send_that_was_not_delivered_does_not_use_up_its_dedupe_id(
    durable: Durable, waiter: Any
) -> None:
    """A sender that got EventNotDelivered may retry with the same id once someone waits."""
    env = WorkflowTestEnvironment(durable)
    with pytest.raises(EventNotDelivered):
        durable.send_event("k", "too early", dedupe_id="d")
    handle = waiter.start("k")
    env.run_until_idle()
    assert durable.send_event("k", "retried", dedupe_id="d") is True
    assert env.result(handle) == ["retried"]
