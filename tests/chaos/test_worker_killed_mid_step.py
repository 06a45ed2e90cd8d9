"""Real worker processes killed with SIGKILL mid-step: the run completes, no outcome twice.

Each test starts ``celery worker --pool prefork`` on the session's Redis (the app is
``tests/chaos/chaos_app.py``), starts a run from this process, waits until the slow middle step
reports its pid, and kills it. Steps run at least once (the killed one runs again); their
outcomes are recorded exactly once.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import redis
from celery import Celery

from durable_celery import Durable
from durable_celery.codec import Place
from durable_celery.replay.events import Event, records_call
from durable_celery.store import keys

from . import chaos_app
from .workers import WorkerProcess

pytestmark = [
    pytest.mark.chaos,
    pytest.mark.timeout(90),
    pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc to find pids"),
]

REPO = Path(__file__).resolve().parents[2]

#: Bound on every wait for the run, after a kill.
RECOVERY_SECONDS = 60.0


def expected(x: int) -> int:
    return (x + 1) * 2 + 100  # chaos.before, chaos.slow, chaos.after


class Worker(WorkerProcess):
    def __init__(
        self, env: dict[str, str], queue: str, log: Path, name: str, concurrency: int = 2
    ) -> None:
        super().__init__("tests.chaos.chaos_app", env, queue, log, name, concurrency)


@dataclass
class Chaos:
    """One test's world: the chaos app in this process, and real workers for it."""

    durable: Durable
    pipeline: Any
    prefix: str
    start_worker: Callable[..., Worker]

    @property
    def redis(self) -> redis.Redis:
        return self.durable.runtime.store.client  # type: ignore[attr-defined, no-any-return]

    def reports(self, step: str) -> list[dict[str, int]]:
        raw = self.redis.lrange(chaos_app.reports_key(self.prefix, step), 0, -1)
        return [json.loads(r) for r in raw]  # type: ignore[union-attr]

    def executions(self, step: str) -> int:
        return int(self.redis.get(chaos_app.executions_key(self.prefix, step)) or 0)  # type: ignore[arg-type]

    def settled(self, step: str, timeout: float = 10.0) -> tuple[int, list[dict[str, int]]]:
        """``(executions, reports)`` of ``step``, read together once every execution started
        has reported. A duplicate execution may still be starting after the run completed (at
        least once), and it counts itself before it reports: two separate reads could see it
        in one and not in the other."""
        deadline = time.monotonic() + timeout
        while True:
            pipe = self.redis.pipeline(transaction=True)
            pipe.get(chaos_app.executions_key(self.prefix, step))
            pipe.lrange(chaos_app.reports_key(self.prefix, step), 0, -1)
            count, raw = pipe.execute()
            reports = [json.loads(r) for r in raw]
            if int(count or 0) == len(reports) or time.monotonic() > deadline:
                return int(count or 0), reports
            time.sleep(0.05)

    def slow_step_pid(self, worker: Worker, timeout: float = 30.0) -> int:
        """The pid of the process running the slow step's first execution, once it runs."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = self.reports("slow")
            if found:
                return int(found[0]["pid"])
            assert worker.alive(), f"the worker exited early:\n{worker.tail()}"
            time.sleep(0.02)
        raise AssertionError(f"the slow step never started:\n{worker.tail()}")

    def result(self, handle: Any, worker: Worker) -> Any:
        try:
            return handle.result(timeout=RECOVERY_SECONDS)
        except TimeoutError:
            pytest.fail(f"the run did not complete after the kill; worker log:\n{worker.tail()}")


@pytest.fixture
def chaos(redis_url: str, key_prefix: str, tmp_path: Path) -> Iterator[Callable[..., Chaos]]:
    """``chaos(execution, **env)``: the chaos app on this test's prefix (``env``: more variables
    for its workers); every worker stops after."""
    workers: list[Worker] = []
    apps: list[tuple[Celery, Durable]] = []

    def make(execution: str, **extra_env: str) -> Chaos:
        queue = f"q-{key_prefix}"
        app, durable, pipeline = chaos_app.make_app(redis_url, key_prefix, queue, execution)
        apps.append((app, durable))
        env = {
            **os.environ,
            "CHAOS_REDIS_URL": redis_url,
            "CHAOS_PREFIX": key_prefix,
            "CHAOS_QUEUE": queue,
            "CHAOS_EXECUTION": execution,
            "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
            **extra_env,
        }

        def start_worker(concurrency: int = 2) -> Worker:
            n = len(workers)
            log = tmp_path / f"worker-{n}.log"
            workers.append(Worker(env, queue, log, f"chaos{n}", concurrency))
            return workers[-1]

        return Chaos(durable, pipeline, key_prefix, start_worker)

    yield make
    for worker in workers:
        worker.stop()
    for app, durable in apps:
        if durable._runtime is not None:
            durable._runtime.store.client.close()  # type: ignore[attr-defined]
        app.close()


def parent_of(pid: int) -> int:
    with open(f"/proc/{pid}/stat") as stat:
        return int(stat.read().rsplit(")", 1)[1].split()[1])


def gone(pid: int, within: float = 5.0) -> bool:
    """True once ``pid`` no longer runs (exited, or a zombie waiting to be reaped).

    SIGKILL reaches an orphaned pool child asynchronously: it may still be scheduled for a few
    milliseconds after its parent was reaped, so look again for up to ``within`` seconds.
    """
    deadline = time.monotonic() + within
    while True:
        try:
            with open(f"/proc/{pid}/stat") as stat:
                if stat.read().rsplit(")", 1)[1].split()[0] == "Z":
                    return True
        except FileNotFoundError:
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.01)


def ev_place(run_id: str, event: Event) -> Place:
    return Place(run_id, event.kind, event.cid)


def assert_each_step_recorded_once(history: list[Event]) -> None:
    completed = [e for e in history if e.kind == "step_completed"]
    calls = [e for e in history if records_call(e)]  # inline steps: their one entry
    assert [e.meta["name"] for e in completed] == ["chaos.before", "chaos.slow", "chaos.after"]
    assert sorted(e.cid for e in completed) == sorted(e.cid for e in calls)
    assert len({e.cid for e in calls}) == len(calls)  # each call recorded once
    assert len({e.cid for e in completed}) == len(completed)  # exactly one outcome per cid
    assert [e.kind for e in history].count("run_completed") == 1


@pytest.mark.parametrize("execution", ["dispatch", "inline"])
def test_a_pool_child_killed_mid_step_is_replaced_and_the_step_runs_again(
    chaos: Callable[[str], Chaos], execution: str
) -> None:
    env = chaos(execution)
    worker = env.start_worker()
    handle = env.pipeline.start(1)
    child = env.slow_step_pid(worker)
    assert child != worker.pid and parent_of(child) == worker.pid  # a pool child, not the parent

    os.kill(child, signal.SIGKILL)

    assert env.result(handle, worker) == expected(1)
    assert worker.alive()  # the parent survived, replaced its child and requeued the message
    executions, reports = env.settled("slow")
    assert executions == len(reports) >= 2  # at least once: it ran again
    assert reports[0]["pid"] == child and all(r["pid"] != child for r in reports[1:])
    assert_each_step_recorded_once(env.durable.history(handle.run_id))


@pytest.mark.parametrize("execution", ["dispatch", "inline"])
def test_large_payloads_come_through_a_pool_child_killed_mid_step(
    chaos: Callable[[str], Chaos], execution: str
) -> None:
    """Inputs and outcomes of 16 KiB, kept beside the log in Redis: the run completes with the
    payload each step made, every one of them read back whole."""
    env = chaos(execution)
    worker = env.start_worker()
    ballast = os.urandom(16 * 1024)
    handle = env.pipeline.start(1, ballast)
    os.kill(env.slow_step_pid(worker), signal.SIGKILL)

    value, carried = env.result(handle, worker)
    assert value == expected(1)
    assert carried == chaos_app.turn(chaos_app.turn(chaos_app.turn(ballast)))
    history = env.durable.history(handle.run_id)
    assert_each_step_recorded_once(history)
    completed = [e for e in history if e.kind == "step_completed"]
    codec = env.durable.runtime.codec
    outcomes = [codec.decode(e.payload, ev_place(handle.run_id, e)) for e in completed]
    turned = ballast
    for (_, made), name in zip(outcomes, ("before", "slow", "after"), strict=True):
        turned = chaos_app.turn(turned)
        assert made == turned, name
    payloads = keys.run_keys(env.prefix, handle.run_id).payloads
    assert env.redis.hlen(payloads) >= len(completed)  # the outcomes sit beside the log


def test_a_whole_worker_killed_mid_step_is_recovered_by_a_new_worker(
    chaos: Callable[[str], Chaos],
) -> None:
    env = chaos("dispatch")
    first = env.start_worker()
    handle = env.pipeline.start(5)
    child = env.slow_step_pid(first)

    first.kill_all()  # parent and children at once: nobody is left to requeue the message
    assert gone(child)
    assert handle.status() == "running"

    # The step's message is still unacked in the broker: the new worker restores it once its
    # visibility timeout (5 s in the chaos app) has passed.
    second = env.start_worker()
    assert env.result(handle, second) == expected(5)
    executions, reports = env.settled("slow")
    assert executions == len(reports) >= 2
    assert reports[0]["pid"] == child and all(r["pid"] != child for r in reports[1:])
    assert_each_step_recorded_once(env.durable.history(handle.run_id))


def test_a_worker_killed_between_sending_a_step_and_recording_it_leaves_no_trace(
    chaos: Callable[..., Chaos],
) -> None:
    """The pass that continues the run after chaos.slow sends chaos.after (its input in the
    message) and is SIGKILLed before its append records the step. The step still runs and its
    outcome waits; the run's next pass (after the dead pass's lease) schedules the step again,
    takes that outcome, and the run completes with each outcome recorded once, after its
    scheduling."""
    env = chaos("dispatch", CHAOS_KILL_AFTER_SENDING="chaos.after")
    env.redis.set(chaos_app.executions_key(env.prefix, "slow"), 1)  # slow: no sleep this time
    worker = env.start_worker()
    handle = env.pipeline.start(7)

    assert env.result(handle, worker) == expected(7)
    killed = env.redis.get(chaos_app.killed_key(env.prefix))
    assert killed is not None and gone(int(killed))  # the kill did happen, in a pool child
    assert worker.alive()
    history = env.durable.history(handle.run_id)
    assert_each_step_recorded_once(history)
    position = {(e.kind, e.cid): i for i, e in enumerate(history)}
    for e in history:
        if e.kind == "step_completed":
            assert position[("step_scheduled", e.cid)] < position[("step_completed", e.cid)]
    executions, reports = env.settled("after")
    assert executions == len(reports) >= 1


def test_a_worker_killed_right_after_recording_a_step_ahead_leaves_the_run_whole(
    chaos: Callable[..., Chaos],
) -> None:
    """One pool process, so the worker that runs a step holds the run's suspended workflow and
    records the outcome ahead, with the next step sent and scheduled. It is SIGKILLed right
    after that script, before the step's task message is acknowledged: the message comes back
    flagged as redelivered, finds the outcome recorded and does not run the step again; the
    step sent ahead runs, and the run completes with each outcome recorded once."""
    env = chaos("dispatch", CHAOS_KILL_AFTER_RECORDING_AHEAD="1")
    env.redis.set(chaos_app.executions_key(env.prefix, "slow"), 1)  # slow: no sleep this time
    worker = env.start_worker(concurrency=1)
    handle = env.pipeline.start(3)

    assert env.result(handle, worker) == expected(3)
    raw = env.redis.get(chaos_app.ahead_killed_key(env.prefix))
    assert raw is not None, "no outcome was recorded ahead: nothing was killed"
    killed = json.loads(raw)
    assert gone(int(killed["pid"])) and worker.alive()
    history = env.durable.history(handle.run_id)
    assert_each_step_recorded_once(history)
    name = next(
        e.meta["name"] for e in history if e.kind == "step_scheduled" and e.cid == killed["cid"]
    )
    step = name.split(".")[1]
    assert env.executions(step) - (1 if step == "slow" else 0) == 1  # not run again
