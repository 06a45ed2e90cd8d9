"""Helpers for the timer tests that run against a real Redis."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, TypeVar

from celery import Celery

from durable_celery.replay.events import Event

T = TypeVar("T")


def configure(app: Celery, redis_url: str, key_prefix: str, **settings: Any) -> None:
    """Point ``app``'s broker and event store at ``redis_url``, every key under ``key_prefix``.

    kombu's keys go under the prefix too (``global_keyprefix``), so the ``key_prefix`` fixture
    deletes them with the rest. The timer poll interval is left at its default unless a test
    sets ``durable_timer_poll_interval``.
    """
    app.conf.broker_url = redis_url
    app.conf.durable_redis_url = redis_url
    app.conf.durable_key_prefix = key_prefix
    app.conf.task_default_queue = f"q-{key_prefix}"
    app.conf.broker_transport_options = {
        "global_keyprefix": f"{key_prefix}:kombu:",
        "polling_interval": 0.1,  # BRPOP timeout: a worker stops within it
    }
    app.conf.broker_connection_retry_on_startup = True
    app.conf.update(settings)


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


def count_per_cid(history: list[Event], kind: str) -> dict[str, int]:
    counts: dict[str, int] = {}
    for event in history:
        if event.kind == kind:
            counts[event.cid] = counts.get(event.cid, 0) + 1
    return counts


def kinds(history: list[Event]) -> list[str]:
    return [event.kind for event in history]


def only(history: list[Event], kind: str) -> Event:
    """The one entry of ``kind`` (fails when there are none or several)."""
    (event,) = [e for e in history if e.kind == kind]
    return event
