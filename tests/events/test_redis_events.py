"""External events on a real Redis with a real Celery worker (a thread of this process).

The sending side needs no worker: ``send_event`` finds the waiting run through its hook in
Redis and records the event in the run's log itself; a worker only has to continue the run.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
import redis

from durable_celery import Durable, EventKeyInUse, EventNotDelivered, wait_for_event
from durable_celery.testing.embedded import run_worker

from .conftest import AppFactory
from .support import kinds, of_kind, wait_until

pytestmark = pytest.mark.timeout(30)


def define_waiter(durable: Durable) -> Any:
    @durable.workflow(name="waiter")
    def waiter(key: str, timeout: float | None = None) -> Any:
        return wait_for_event(key, timeout=timeout)

    return waiter


def asleep_on(durable: Durable, run_id: str) -> bool:
    return "event_awaited" in kinds(durable.history(run_id))


def test_an_event_sent_while_no_worker_runs_is_delivered_when_one_starts(
    make_app: AppFactory, redis_client: redis.Redis, key_prefix: str
) -> None:
    app, durable = make_app()
    waiter = define_waiter(durable)
    with run_worker(app, concurrency=1):
        handle = waiter.start("review:o-7")
        wait_until(lambda: asleep_on(durable, handle.run_id), what="the run to wait")
    # No worker anywhere now. The sender is another app (a web process, say) that knows
    # nothing of the workflow: only Redis.
    _, sender = make_app("web")
    assert redis_client.get(f"{key_prefix}:hook:review:o-7") == f"{handle.run_id}\ne1".encode()
    assert sender.send_event("review:o-7", {"approved": True}) is True
    assert of_kind(durable.history(handle.run_id), "event_received")  # recorded by the sender
    assert handle.status() == "running"
    assert redis_client.get(f"{key_prefix}:hook:review:o-7") is None

    with run_worker(app, concurrency=1):
        assert handle.result(timeout=10) == {"approved": True}


def test_a_timed_out_wait_returns_none_and_a_later_event_is_not_delivered(
    make_app: AppFactory,
) -> None:
    app, durable = make_app()
    waiter = define_waiter(durable)
    with run_worker(app, concurrency=2):
        handle = waiter.start("late", timeout=0.3)
        assert handle.result(timeout=10) is None
        with pytest.raises(EventNotDelivered):
            durable.send_event("late", "after the timeout")
        time.sleep(0.2)  # give a wrongly delivered event a chance to show up
    assert handle.result(timeout=1) is None
    history = durable.history(handle.run_id)
    received = of_kind(history, "event_received")
    assert [(e.cid, e.meta) for e in received] == [("e1", {"key": "late", "timeout": True})]
    assert kinds(history)[-1] == "run_completed"


def test_concurrent_sends_with_one_dedupe_id_deliver_once(make_app: AppFactory) -> None:
    app, durable = make_app()
    waiter = define_waiter(durable)
    with run_worker(app, concurrency=2):
        handle = waiter.start("pay:o-9")
        wait_until(lambda: asleep_on(durable, handle.run_id), what="the run to wait")
        results: list[Any] = []
        barrier = threading.Barrier(8)

        def send(n: int) -> None:
            barrier.wait(5)
            try:
                results.append(durable.send_event("pay:o-9", n, dedupe_id="webhook-123"))
            except EventNotDelivered as exc:  # would mean a duplicate got past the dedupe
                results.append(exc)

        threads = [threading.Thread(target=send, args=(n,)) for n in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(10)
        value = handle.result(timeout=10)
    assert sorted(map(str, results)) == ["False"] * 7 + ["True"]
    assert value in range(8)
    assert len(of_kind(durable.history(handle.run_id), "event_received")) == 1


def test_a_second_run_waiting_on_a_taken_key_fails_with_event_key_in_use(
    make_app: AppFactory,
) -> None:
    app, durable = make_app()
    waiter = define_waiter(durable)
    with run_worker(app, concurrency=2):
        first = waiter.start("shared")
        wait_until(lambda: asleep_on(durable, first.run_id), what="the first run to wait")
        second = waiter.start("shared")
        with pytest.raises(EventKeyInUse, match=f"run {first.run_id} already waits"):
            second.result(timeout=10)
        durable.send_event("shared", "for the first")
        assert first.result(timeout=10) == "for the first"


def test_a_buffered_event_expires_on_the_redis_clock(
    make_app: AppFactory, redis_client: redis.Redis, key_prefix: str
) -> None:
    app, durable = make_app()
    waiter = define_waiter(durable)
    durable.send_event("fresh", "kept", buffer=True)
    durable.send_event("stale", "dropped", buffer=True, buffer_ttl=0.2)
    time.sleep(0.3)
    with run_worker(app, concurrency=2):
        kept = waiter.start("fresh")
        dropped = waiter.start("stale", timeout=0.2)
        assert kept.result(timeout=10) == "kept"
        assert dropped.result(timeout=10) is None
    assert redis_client.exists(f"{key_prefix}:evbuf:stale") == 0
