"""A 20-way gather survives worker processes killed with SIGKILL mid-branch.

Real ``celery worker --pool prefork -c 2`` processes (app: ``tests/chaos/gather_app.py``) run
the branches on the session's Redis. While branches run, the test kills a pool child (its
parent replaces it, and the message comes back: ``reject_on_worker_lost``), or a whole worker
with its children (a new worker restores the messages it had taken). The run still returns
every branch's result, in order, with exactly one recorded outcome per branch.
"""

from __future__ import annotations

import json
import os
import signal
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from durable_celery.replay import events as ev

from . import gather_app
from .workers import WorkerProcess

pytestmark = [pytest.mark.chaos, pytest.mark.timeout(90)]

REPO = Path(__file__).resolve().parents[2]
WIDTH = 20


class Worker(WorkerProcess):
    def __init__(self, env: dict[str, str], queue: str, log: Path, name: str) -> None:
        super().__init__("tests.chaos.gather_app", env, queue, log, name)


def parent_of(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return int(stat.read().rsplit(")", 1)[1].split()[1])
    except FileNotFoundError:
        return 0


class GatherChaos:
    def __init__(
        self, durable: Any, fan_out: Any, start_worker: Callable[[], Worker], prefix: str
    ) -> None:
        self.durable = durable
        self.fan_out = fan_out
        self.start_worker = start_worker
        self.prefix = prefix
        self.redis: redis.Redis = durable.runtime.store.client
        self.workers: list[Worker] = []

    def reports(self) -> list[dict[str, Any]]:
        raw = self.redis.lrange(gather_app.reports_key(self.prefix), 0, -1)
        return [json.loads(r) for r in raw]

    def running(self, margin: float = 0.2) -> dict[int, int]:
        """Branch index -> pid, for branches started and not ended that still have ``margin``
        seconds of sleep left (so a kill now surely lands mid-branch)."""
        started: dict[tuple[int, int], float] = {}
        for r in self.reports():
            key = (int(r["i"]), int(r["pid"]))
            if r["event"] == "start":
                started[key] = float(r["t"])
            else:
                started.pop(key, None)
        now = time.time()
        return {
            i: pid
            for (i, pid), t in started.items()
            if now < t + gather_app.branch_seconds(i) - margin
        }

    def wait_for_branch_running_in(
        self, parents: set[int], timeout: float = 30.0
    ) -> tuple[int, int]:
        """A (branch, pid) running now in a pool child of one of ``parents``."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for i, pid in sorted(self.running().items()):
                if parent_of(pid) in parents:
                    return i, pid
            for worker in self.workers:
                assert worker.alive(), f"worker exited early:\n{worker.tail()}"
            time.sleep(0.02)
        raise AssertionError(
            "no branch ever ran:\n" + "\n----\n".join(w.tail() for w in self.workers)
        )


@pytest.fixture
def gather_chaos(redis_url: str, key_prefix: str, tmp_path: Path) -> Iterator[GatherChaos]:
    queue = f"q-{key_prefix}"
    app, durable, fan_out = gather_app.make_app(redis_url, key_prefix, queue)
    env = dict(os.environ)
    env.update(
        GATHER_REDIS_URL=redis_url,
        GATHER_PREFIX=key_prefix,
        GATHER_QUEUE=queue,
        PYTHONPATH=os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH")) if p),
    )
    chaos: GatherChaos

    def start_worker() -> Worker:
        n = len(chaos.workers)
        worker = Worker(env, queue, tmp_path / f"worker-{n}.log", f"gw{n}")
        chaos.workers.append(worker)
        return worker

    chaos = GatherChaos(durable, fan_out, start_worker, key_prefix)
    yield chaos
    for worker in chaos.workers:
        worker.stop()
    durable.runtime.store.client.close()
    app.close()


def assert_every_branch_recorded_once(chaos: GatherChaos, run_id: str) -> None:
    history = chaos.durable.history(run_id)
    scheduled = [e.cid for e in history if e.kind == ev.STEP_SCHEDULED]
    completed = Counter(e.cid for e in history if e.kind == ev.STEP_COMPLETED)
    assert scheduled == [f"s{i}" for i in range(1, WIDTH + 1)]
    assert completed == dict.fromkeys(scheduled, 1), completed
    assert all(
        n == 1 for n in Counter(e.cid for e in history if e.kind in ev.OUTCOME_KINDS).values()
    )
    assert [e.kind for e in history].count(ev.RUN_COMPLETED) == 1


def assert_ran_again(chaos: GatherChaos, branch: int, killed: int) -> None:
    """The killed branch never ended in the killed process, and ended in another one."""
    mine = [r for r in chaos.reports() if r["i"] == branch]
    assert {"event": "start", "pid": killed} in [{k: r[k] for k in ("event", "pid")} for r in mine]
    assert all(r["pid"] != killed for r in mine if r["event"] == "end")
    assert any(r["pid"] != killed for r in mine if r["event"] == "end")


def test_a_pool_child_killed_mid_branch_leaves_the_gather_complete_and_exact(
    gather_chaos: GatherChaos,
) -> None:
    chaos = gather_chaos
    started = time.monotonic()
    workers = [chaos.start_worker(), chaos.start_worker()]
    handle = chaos.fan_out.start(WIDTH)
    branch, child = chaos.wait_for_branch_running_in({w.pid for w in workers})

    os.kill(child, signal.SIGKILL)

    try:
        assert handle.result(timeout=75) == gather_app.expected(WIDTH)
    except TimeoutError:
        pytest.fail("run did not complete:\n" + "\n----\n".join(w.tail() for w in workers))
    assert all(w.alive() for w in workers)  # the parent replaced its child
    assert time.monotonic() - started < 90
    assert_ran_again(chaos, branch, child)
    assert_every_branch_recorded_once(chaos, handle.run_id)


def test_a_whole_worker_killed_mid_gather_is_made_good_by_the_others(
    gather_chaos: GatherChaos,
) -> None:
    chaos = gather_chaos
    started = time.monotonic()
    doomed, survivor = chaos.start_worker(), chaos.start_worker()
    handle = chaos.fan_out.start(WIDTH)
    branch, child = chaos.wait_for_branch_running_in({doomed.pid})

    doomed.kill_all()  # parent and children: nobody is left to give its messages back
    chaos.workers.remove(doomed)
    doomed.stop()
    replacement = chaos.start_worker()

    try:
        assert handle.result(timeout=75) == gather_app.expected(WIDTH)
    except TimeoutError:
        pytest.fail(
            "run did not complete:\n" + "\n----\n".join(w.tail() for w in (survivor, replacement))
        )
    assert time.monotonic() - started < 90
    assert_ran_again(chaos, branch, child)
    assert_every_branch_recorded_once(chaos, handle.run_id)
