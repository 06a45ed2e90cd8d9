"""Helpers shared by the integration tests (fixtures live in conftest.py)."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import redis
from celery import Celery

from durable_celery import Durable
from durable_celery.replay.events import Event, records_call

T = TypeVar("T")

#: The ``make_app`` fixture: ``make_app(name="itest", **settings)`` -> ``(app, durable)``.
AppFactory = Callable[..., tuple[Celery, Durable]]


def configure(app: Celery, redis_url: str, key_prefix: str, **settings: Any) -> None:
    """Point ``app`` (broker and event store) at ``redis_url``, isolated under ``key_prefix``.

    The broker's keys (queues, bindings, kombu's unacked hash) go under the prefix too, through
    kombu's ``global_keyprefix``, so the ``key_prefix`` fixture deletes them with the rest.
    """
    app.conf.broker_url = redis_url
    app.conf.durable_redis_url = redis_url
    app.conf.durable_key_prefix = key_prefix
    app.conf.task_default_queue = f"q-{key_prefix}"
    app.conf.broker_transport_options = {
        "global_keyprefix": broker_prefix(key_prefix),
        "polling_interval": 0.1,  # BRPOP timeout: a worker stops within it
    }
    app.conf.broker_connection_retry_on_startup = True
    app.conf.durable_timer_poll_interval = 0.05
    app.conf.update(settings)


def broker_prefix(key_prefix: str) -> str:
    return f"{key_prefix}:kombu:"


def kinds(history: list[Event]) -> list[str]:
    return [event.kind for event in history]


def count_per_cid(history: list[Event], kind: str = "step_completed") -> dict[str, int]:
    counts: dict[str, int] = {}
    for event in history:
        if event.kind == kind:
            counts[event.cid] = counts.get(event.cid, 0) + 1
    return counts


def calls_per_cid(history: list[Event]) -> dict[str, int]:
    """How many entries record each step's call: its step_scheduled entry, or the one entry
    of an inline step that settled in its pass."""
    counts: dict[str, int] = {}
    for event in history:
        if records_call(event):
            counts[event.cid] = counts.get(event.cid, 0) + 1
    return counts


def wait_until(predicate: Callable[[], T], timeout: float = 10.0, what: str = "condition") -> T:
    """Poll ``predicate`` until it returns something truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.01)


class Gate:
    """Holds a step until the test opens it: ``entered`` is set once the step is waiting.

    Open it in a ``finally``: a worker cannot shut down with a thread stuck on a closed gate.
    """

    def __init__(self) -> None:
        self.entered = threading.Event()
        self.opened = threading.Event()

    def wait(self, timeout: float = 30.0) -> None:
        self.entered.set()
        if not self.opened.wait(timeout):
            raise TimeoutError("the test never opened the gate")

    def open(self) -> None:
        self.opened.set()


def log_key(key_prefix: str, run_id: str) -> str:
    return f"{key_prefix}:{{{run_id}}}:log"


def raw_log(client: redis.Redis, key_prefix: str, run_id: str) -> list[Any]:
    """The run's stream exactly as Redis holds it (XRANGE), bypassing the store."""
    return client.xrange(log_key(key_prefix, run_id))  # type: ignore[return-value]


@contextlib.contextmanager
def orchestrator_failures() -> Iterator[list[BaseException]]:
    """Collect the exceptions orchestrator tasks fail with while the block runs."""
    from celery import signals

    failures: list[BaseException] = []

    def collect(sender: Any = None, exception: BaseException | None = None, **_: Any) -> None:
        if getattr(sender, "name", "") == "durable_celery.orchestrate" and exception is not None:
            failures.append(exception)

    signals.task_failure.connect(collect, weak=False)
    try:
        yield failures
    finally:
        signals.task_failure.disconnect(collect)


def app_factory(redis_url: str, key_prefix: str, default_name: str) -> Iterator[AppFactory]:
    """Body of the ``make_app`` fixtures: ``make(name, **settings)`` -> ``(app, durable)`` on
    this test's key prefix; every app made is closed afterwards."""
    made: list[tuple[Celery, Durable]] = []

    def make(name: str = default_name, **settings: Any) -> tuple[Celery, Durable]:
        app = Celery(name, set_as_current=False)
        configure(app, redis_url, key_prefix, **settings)
        durable = Durable(app)
        made.append((app, durable))
        return app, durable

    yield make
    for app, durable in made:
        if durable._runtime is not None:
            durable._runtime.store.client.close()  # type: ignore[attr-defined]
        app.close()
