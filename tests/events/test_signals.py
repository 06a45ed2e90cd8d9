"""Signals: durable.signal(run_id, name, payload) and receive(name, timeout=None).

A signal is appended to the run's own log when it is sent, so it is kept in order and never
lost, whether the workflow is already waiting for it, busy elsewhere, or not started yet.
"""

from __future__ import annotations

from typing import Any

import pytest

from durable_celery import Durable, DurableError, receive, sleep
from durable_celery.testing import WorkflowTestEnvironment

from .support import kinds, of_kind


@pytest.fixture
def inbox(durable: Durable) -> Any:
    @durable.workflow(name="inbox")
    def inbox(name: str, count: int, timeout: float | None = None) -> list[Any]:
        return [receive(name, timeout=timeout) for _ in range(count)]

    return inbox


def test_a_waiting_run_receives_a_signal(durable: Durable, inbox: Any) -> None:
    env = WorkflowTestEnvironment(durable)
    handle = inbox.start("approve", 1)
    env.run_until_idle()
    assert handle.status() == "running"
    assert durable.signal(handle.run_id, "approve", {"by": "ada"}) is True
    assert env.result(handle) == [{"by": "ada"}]
    (signal,) = of_kind(durable.history(handle.run_id), "signal_received")
    assert signal.meta == {"name": "approve"}


def test_signals_sent_before_the_workflow_waits_are_kept_in_order(
    durable: Durable, inbox: Any
) -> None:
    env = WorkflowTestEnvironment(durable)
    handle = inbox.start("item", 3)
    for n in range(3):  # before the run's first pass
        durable.signal(handle.run_id, "item", n)
    assert env.result(handle) == [0, 1, 2]


def test_signals_sent_while_the_workflow_is_busy_elsewhere_are_not_lost(
    durable: Durable,
) -> None:
    @durable.workflow(name="later")
    def later() -> list[Any]:
        sleep(3600)
        return [receive("note"), receive("note")]

    env = WorkflowTestEnvironment(durable)
    handle = later.start()
    env.run_until_idle()
    durable.signal(handle.run_id, "note", "a")
    env.advance(minutes=30)
    durable.signal(handle.run_id, "note", "b")
    env.advance(minutes=30)
    assert env.result(handle) == ["a", "b"]


def test_each_name_is_its_own_ordered_queue(durable: Durable) -> None:
    @durable.workflow(name="two_queues")
    def two_queues() -> list[Any]:
        return [receive("b"), receive("a"), receive("b"), receive("a")]

    env = WorkflowTestEnvironment(durable)
    handle = two_queues.start()
    for name, value in [("a", "a1"), ("b", "b1"), ("a", "a2"), ("b", "b2")]:
        durable.signal(handle.run_id, name, value)
    assert env.result(handle) == ["b1", "a1", "b2", "a2"]


def test_receive_times_out_to_none_and_a_later_signal_waits_for_the_next_receive(
    durable: Durable,
) -> None:
    @durable.workflow(name="patient")
    def patient() -> list[Any]:
        first = receive("go", timeout=60)
        sleep(60)
        return [first, receive("go", timeout=60)]

    env = WorkflowTestEnvironment(durable)
    handle = patient.start()
    env.advance(60)  # the first receive times out
    durable.signal(handle.run_id, "go", "late")  # while the workflow sleeps
    env.advance(60)
    assert env.result(handle) == [None, "late"]


def test_a_signal_in_the_log_before_the_timeout_is_received(durable: Durable) -> None:
    @durable.workflow(name="quick")
    def quick() -> Any:
        return receive("go", timeout=60)

    env = WorkflowTestEnvironment(durable)
    handle = quick.start()
    env.advance(59)
    durable.signal(handle.run_id, "go", "in time")
    env.advance(60)
    assert env.result(handle) == "in time"


def test_receive_replays_to_the_same_values(durable: Durable, inbox: Any) -> None:
    from durable_celery.testing import replay_history

    env = WorkflowTestEnvironment(durable)
    handle = inbox.start("x", 3, timeout=10)
    durable.signal(handle.run_id, "x", 1)
    env.advance(10)  # the second receive times out...
    durable.signal(handle.run_id, "x", 3)  # ...and the third gets this one
    assert env.result(handle) == [1, None, 3]
    report = replay_history(
        durable.history(handle.run_id), durable.registry, env.runtime.codec, handle.run_id
    )
    assert report.value == [1, None, 3] and report.matches_record is True


def test_a_signal_sent_twice_with_one_dedupe_id_is_kept_once(durable: Durable, inbox: Any) -> None:
    env = WorkflowTestEnvironment(durable)
    handle = inbox.start("pay", 2, timeout=30)
    assert durable.signal(handle.run_id, "pay", 100, dedupe_id="p-1") is True
    assert durable.signal(handle.run_id, "pay", 100, dedupe_id="p-1") is False
    env.advance(30)
    assert env.result(handle) == [100, None]
    assert len(of_kind(durable.history(handle.run_id), "signal_received")) == 1


def test_a_finished_run_refuses_signals(durable: Durable, inbox: Any) -> None:
    env = WorkflowTestEnvironment(durable)
    handle = inbox.start("x", 0)
    assert env.result(handle) == []
    before = kinds(durable.history(handle.run_id))
    with pytest.raises(DurableError, match="is completed; it cannot receive signals"):
        durable.signal(handle.run_id, "x", 1)
    assert kinds(durable.history(handle.run_id)) == before


@pytest.mark.parametrize("name", ["", None])
def test_a_signal_needs_a_name(durable: Durable, inbox: Any, name: Any) -> None:
    WorkflowTestEnvironment(durable)
    handle = inbox.start("x", 1)
    with pytest.raises(TypeError, match="signal\\(\\) needs a non-empty signal name"):
        durable.signal(handle.run_id, name, 1)
