"""Durable timers on a real Redis with real Celery workers (threads of this process).

Deadlines live in the ``<prefix>:timers`` zset on the Redis server's clock; a bootstep in every
worker claims due timers, records ``timer_fired`` (append-once), then removes them.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from celery import signals

from durable_celery import Durable, current_step, sleep
from durable_celery.integration.bootsteps import TimerPoller
from durable_celery.testing.embedded import run_worker

from .conftest import AppFactory
from .support import count_per_cid, kinds, only, wait_until

pytestmark = pytest.mark.timeout(60)


def timers_key(key_prefix: str) -> str:
    return f"{key_prefix}:timers"


def timer_member(kind: str, run_id: str, cid: str, data: dict[str, Any] | None = None) -> str:
    return json.dumps([kind, run_id, cid, data or {}], sort_keys=True, separators=(",", ":"))


def server_ms(client: redis.Redis) -> int:
    seconds, micros = client.time()
    return int(seconds) * 1000 + int(micros) // 1000


@pytest.fixture
def published() -> Iterator[list[tuple[str, Any]]]:
    """``(task name, eta header)`` of every task message this process publishes."""
    seen: list[tuple[str, Any]] = []

    def record(sender: str | None = None, headers: dict[str, Any] | None = None, **_: Any) -> None:
        seen.append((str(sender), (headers or {}).get("eta")))

    signals.before_task_publish.connect(record, weak=False)
    yield seen
    signals.before_task_publish.disconnect(record)


def define_nap(durable: Durable) -> Any:
    @durable.workflow(name="nap")
    def nap(seconds: float) -> str:
        sleep(seconds)
        return f"slept {seconds}"

    return nap


def test_a_timer_lives_in_redis_and_fires_about_a_second_after_its_deadline(
    make_app: AppFactory,
    redis_client: redis.Redis,
    key_prefix: str,
    published: list[tuple[str, Any]],
) -> None:
    app, durable = make_app()  # the default poll interval
    assert durable.config.timer_poll_interval == 0.5
    nap = define_nap(durable)
    with run_worker(app, concurrency=2) as worker:
        labels = [getattr(step, "label", None) for step in worker.blueprint.steps.values()]
        assert "durable-timers" in labels  # the bootstep Durable(app) installed
        handle = nap.start(1.5)
        member = timer_member("timer", handle.run_id, "t1")
        deadline = wait_until(
            lambda: redis_client.zscore(timers_key(key_prefix), member), what="the deadline"
        )
        started = only(durable.history(handle.run_id), "timer_started")
        # Registered right after its entry, on the server's clock: deadline = then + 1.5 s.
        assert 1500 <= deadline - started.millis < 1500 + 1000
        assert handle.status() == "running"
        assert handle.result(timeout=10) == "slept 1.5"

    fired = only(durable.history(handle.run_id), "timer_fired")
    late_ms = fired.millis - deadline
    assert late_ms >= 0  # never early
    assert late_ms < 1500  # polled every 0.5 s: about a second at most, generously
    assert redis_client.zscore(timers_key(key_prefix), member) is None  # removed once fired
    # The wait was never a Celery ETA/countdown message held in a worker's memory.
    assert published and all(eta is None for _, eta in published)


def test_sleeping_runs_hold_no_worker_slot(make_app: AppFactory) -> None:
    app, durable = make_app(durable_timer_poll_interval=0.05)
    nap = define_nap(durable)

    @durable.workflow(name="quick")
    def quick() -> str:
        return "done"

    with run_worker(app, concurrency=1):  # a single slot
        sleepers = [nap.start(1.5) for _ in range(3)]
        for handle in sleepers:
            wait_until(
                lambda h=handle: "timer_started" in kinds(durable.history(h.run_id)),
                what="every sleeper to be asleep",
            )
        fast = quick.start()
        assert fast.result(timeout=5) == "done"
        assert [h.result(timeout=10) for h in sleepers] == ["slept 1.5"] * 3

    first_fired = min(only(durable.history(h.run_id), "timer_fired").millis for h in sleepers)
    last_asleep = max(only(durable.history(h.run_id), "timer_started").millis for h in sleepers)
    finished = only(durable.history(fast.run_id), "run_completed").millis
    # All three were asleep at once on one slot, and that slot ran another run meanwhile.
    assert last_asleep < first_fired
    assert finished < first_fired


def test_with_three_workers_polling_every_timer_fires_once(make_app: AppFactory) -> None:
    """One real worker plus two more pollers (each its own Durable on the same prefix): Celery
    cannot stop several in-process workers cleanly, and the pollers are what races here."""
    fired: Counter[tuple[str, str, str]] = Counter()
    by_poller: Counter[int] = Counter()
    executions: Counter[tuple[str, str, int]] = Counter()
    durables: list[Durable] = []
    apps = []
    for index in range(3):
        app, durable = make_app(
            f"w{index}", durable_timer_poll_interval=0.01, durable_step_execution="dispatch"
        )

        @durable.step(name="tick", retries=1, backoff=0.2, jitter=False)
        def tick(n: int) -> int:
            info = current_step()
            assert info is not None
            executions[(info.run_id, info.cid, info.attempt)] += 1
            if info.attempt == 1:
                raise ConnectionError("the first attempt fails: its retry is a timer")
            return n

        @durable.workflow(name="nap_then_tick")
        def nap_then_tick(n: int) -> int:
            sleep(0.3)
            return tick(n)

        timers = durable.runtime.timers
        real_fire = timers._fire

        def counting(timer: Any, real_fire: Any = real_fire, index: int = index) -> None:
            fired[(timer.kind, timer.run_id, timer.cid)] += 1
            by_poller[index] += 1
            real_fire(timer)

        timers._fire = counting  # type: ignore[method-assign]
        durables.append(durable)
        apps.append((app, nap_then_tick))

    pollers = [TimerPoller(d) for d in durables[1:]]
    with run_worker(apps[0][0], concurrency=4):  # its bootstep is the first poller
        for poller in pollers:
            poller.start()
        try:
            handles = [apps[0][1].start(n) for n in range(15)]
            assert [h.result(timeout=20) for h in handles] == list(range(15))
        finally:
            for poller in pollers:
                poller.stop()

    for handle in handles:
        history = durables[0].history(handle.run_id)
        assert count_per_cid(history, "timer_fired") == {"t1": 1}
        assert executions[(handle.run_id, "s1", 1)] == 1
        assert executions[(handle.run_id, "s1", 2)] == 1  # the retry timer sent it once
        assert fired[("timer", handle.run_id, "t1")] == 1
        assert fired[("retry", handle.run_id, "s1@2")] == 1
    assert sum(fired.values()) == 30
    assert sum(by_poller.values()) == 30


def test_a_timer_claimed_by_a_worker_that_died_fires_after_its_claim_expires(
    make_app: AppFactory, redis_client: redis.Redis, key_prefix: str
) -> None:
    app, durable = make_app(durable_timer_poll_interval=0.05)
    nap = define_nap(durable)
    handle = nap.start(0.2)
    durable.runtime.orchestrator.run(handle.run_id)  # the first pass, here: no worker yet
    store = durable.runtime.store
    member = timer_member("timer", handle.run_id, "t1")
    deadline = redis_client.zscore(timers_key(key_prefix), member)
    assert deadline is not None
    wait_until(lambda: server_ms(redis_client) >= deadline, what="the deadline")

    before_claim = server_ms(redis_client)
    (claimed,) = store.claim_due_timers(claim_ms=500)  # ...and the claimer dies right here
    assert claimed.member == member
    assert store.claim_due_timers(claim_ms=500) == []  # hidden from everyone else meanwhile

    with run_worker(app, concurrency=2):
        assert handle.result(timeout=10) == "slept 0.2"
    history = durable.history(handle.run_id)
    assert count_per_cid(history, "timer_fired") == {"t1": 1}
    assert only(history, "timer_fired").millis >= before_claim + 500  # not before it expired
    assert redis_client.zscore(timers_key(key_prefix), member) is None


@pytest.mark.parametrize("mode", ["inline", "dispatch"])
def test_a_step_retry_is_a_timer_in_redis_not_a_countdown_message(
    make_app: AppFactory,
    redis_client: redis.Redis,
    key_prefix: str,
    published: list[tuple[str, Any]],
    mode: str,
) -> None:
    app, durable = make_app(durable_timer_poll_interval=0.05, durable_step_execution=mode)
    attempts: list[int] = []

    @durable.step(name="charge", retries=1, backoff=300, jitter=False)
    def charge() -> str:
        info = current_step()
        assert info is not None
        attempts.append(info.attempt)
        if info.attempt == 1:
            raise ConnectionError("the bank is down")
        return "charged"

    @durable.workflow(name="pay")
    def pay() -> str:
        return charge()

    with run_worker(app, concurrency=2):
        handle = pay.start()
        retrying = wait_until(
            lambda: [e for e in durable.history(handle.run_id) if e.kind == "step_retrying"],
            what="the first attempt to fail",
        )[0]
        scheduled = only(durable.history(handle.run_id), "step_scheduled")
        # A dispatched step is sent before its scheduling is recorded (its input travels in
        # the message), so its retry timer finds the entry when it fires.
        entry = scheduled.entry_id if mode == "inline" else ""
        data = {"attempt": 2, "entry": entry, "queue": "", "step": "charge"}
        member = timer_member("retry", handle.run_id, "s1@2", data)
        deadline = wait_until(lambda: redis_client.zscore(timers_key(key_prefix), member))
        # The backoff on the server's clock (registered just before or after the entry).
        assert abs(deadline - retrying.millis - 300_000) < 1000
        step_messages = [eta for name, eta in published if name == "charge"]
        assert all(eta is None for eta in step_messages)  # no ETA message holds the retry
        assert attempts == [1]

        # Time passes (the deadline is moved to now): the worker's bootstep sends attempt 2.
        redis_client.zadd(timers_key(key_prefix), {member: server_ms(redis_client)}, xx=True)
        assert handle.result(timeout=10) == "charged"
    assert attempts == [1, 2]
    assert [eta for name, eta in published if name == "charge"] == [None] * (
        2 if mode == "dispatch" else 1
    )
    assert redis_client.zcard(timers_key(key_prefix)) == 0


@pytest.mark.parametrize("skew_hours", [1, -1])
def test_a_skewed_worker_clock_neither_fires_a_timer_early_nor_stalls_it(
    make_app: AppFactory,
    redis_client: redis.Redis,
    key_prefix: str,
    monkeypatch: pytest.MonkeyPatch,
    skew_hours: int,
) -> None:
    _, durable = make_app()  # the default poll interval
    nap = define_nap(durable)
    real_time = time.time
    skew = skew_hours * 3600.0
    monkeypatch.setattr(time, "time", lambda: real_time() + skew)  # this process's clock is off

    handle = nap.start(1.0)
    before = server_ms(redis_client)
    durable.runtime.orchestrator.run(handle.run_id)
    after = server_ms(redis_client)
    member = timer_member("timer", handle.run_id, "t1")
    deadline = redis_client.zscore(timers_key(key_prefix), member)
    assert deadline is not None
    # The deadline is the server's TIME at registration + 1 s, whatever this process believes.
    assert before + 1000 <= deadline <= after + 1000
    assert abs(time.time() * 1000 - (deadline - 1000)) > 3_000_000  # (the process is skewed)

    poller = TimerPoller(durable)
    poller.start()
    try:
        wait_until(
            lambda: "timer_fired" in kinds(durable.history(handle.run_id)),
            timeout=5,
            what="the timer to fire (a clock behind by an hour would stall it)",
        )
    finally:
        poller.stop()
    fired = only(durable.history(handle.run_id), "timer_fired").millis
    assert fired >= deadline  # a clock ahead by an hour did not fire it early
    assert fired - deadline < 1500
    durable.runtime.orchestrator.run(handle.run_id)
    assert handle.result(timeout=5) == "slept 1.0"


@pytest.mark.chaos
@pytest.mark.timeout(60)
def test_a_sleeping_run_survives_a_redis_restart_with_aof(
    make_app: AppFactory, redis_server_factory: Any, key_prefix: str
) -> None:
    server = redis_server_factory("--appendonly", "yes", "--appendfsync", "always")
    # Broker and event store on the AOF server. Cancelling acks_late tasks on connection loss
    # also keeps Celery from warning about its future default (warnings are errors here).
    app, durable = make_app(
        url=server.url,
        durable_timer_poll_interval=0.05,
        worker_cancel_long_running_tasks_on_connection_loss=True,
    )
    nap = define_nap(durable)
    client = server.client()
    try:
        with run_worker(app, concurrency=2):
            handle = nap.start(2.0)
            wait_until(
                lambda: "timer_started" in kinds(durable.history(handle.run_id)),
                what="the run to fall asleep",
            )
            # Restart once the worker has acknowledged the pass: the restart is meant to land
            # mid-sleep, not mid-pass (a drop right after a pass once crashed this in-process
            # worker inside kombu's restore_unacked, an AttributeError; not what this tests).
            wait_until(
                lambda: client.hlen(f"{key_prefix}:kombu:unacked") == 0,
                what="the worker to acknowledge the pass",
            )
            assert client.zcard(f"{key_prefix}:timers") == 1
            server.restart()  # SIGKILL mid-sleep; only what AOF wrote comes back
            assert client.zcard(f"{key_prefix}:timers") == 1  # the deadline survived
            assert handle.result(timeout=25) == "slept 2.0"
    finally:
        client.close()
    history = durable.history(handle.run_id)
    assert kinds(history) == ["run_started", "timer_started", "timer_fired", "run_completed"]
    assert only(history, "timer_fired").millis - only(history, "timer_started").millis >= 2000
