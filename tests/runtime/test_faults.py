"""A payload this process cannot read is this process's fault: the log must not change."""

from __future__ import annotations

import pytest
from celery import Celery

from durable_celery import DecryptionError, Durable, UnknownWorkflowError
from durable_celery.store import MemoryEventStore
from durable_celery.testing import LocalEnvironment


def make(keys: dict[str, bytes]) -> tuple[Durable, object]:
    app = Celery("t", broker="memory://")
    app.conf.durable_encryption_keys = keys
    durable = Durable(app)

    @durable.step
    def double(x: int) -> int:
        return 2 * x

    @durable.workflow(name="wf")
    def wf(x: int) -> int:
        return double(x) + double(x + 1)

    return durable, wf


def test_a_worker_with_the_wrong_key_writes_nothing_and_the_right_key_completes_the_run() -> None:
    store = MemoryEventStore()
    right, wf = make({"k1": bytes(32)})
    env = LocalEnvironment(right, store=store, step_execution="dispatch", lease_timeout=0.05)
    handle = wf.start(3)  # type: ignore[attr-defined]
    env.step_once()  # the first pass records and dispatches s1
    env.step_once()  # s1 completes
    before = store.read_since(handle.run_id, None)

    wrong, _ = make({"k1": bytes(range(32))})
    bad = LocalEnvironment(wrong, store=store, step_execution="dispatch", lease_timeout=0.05)
    bad.dispatcher.queue.extend(env.dispatcher.queue)  # the wake is delivered to the bad worker
    env.dispatcher.queue.clear()
    with pytest.raises(DecryptionError, match="key id 'k1'"):
        bad.run_until_idle()
    assert store.read_since(handle.run_id, None) == before
    assert store.get_run(handle.run_id).status == "running"  # type: ignore[union-attr]

    # Later, a worker with the right key: the recovery sweep finds the stalled run.
    right._runtime = env.runtime
    import time

    time.sleep(0.06)  # the wake flag has outlived a lease
    assert env.runtime.sweeper.sweep() == [handle.run_id]
    assert env.result(handle) == 6 + 8


def test_a_workflow_unknown_to_this_worker_fails_the_pass_and_writes_nothing() -> None:
    store = MemoryEventStore()
    known, wf = make({})
    env = LocalEnvironment(known, store=store)
    handle = wf.start(1)  # type: ignore[attr-defined]
    before = store.read_since(handle.run_id, None)

    other = Durable(Celery("other", broker="memory://"))  # knows no workflow at all
    stranger = LocalEnvironment(other, store=store)
    stranger.dispatcher.queue.extend(env.dispatcher.queue)
    with pytest.raises(UnknownWorkflowError, match="no workflow named 'wf'"):
        stranger.run_until_idle()
    assert store.read_since(handle.run_id, None) == before
