"""Integration fixtures: a Celery app per test on the session's real Redis.

Workers run in threads of the test process (``durable_celery.testing.embedded.run_worker``);
one worker at a time, since Celery's shutdown flag is process-wide.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from celery import signals

from .support import AppFactory, app_factory


@pytest.fixture
def make_app(redis_url: str, key_prefix: str) -> Iterator[AppFactory]:
    """``make_app(**settings)`` -> ``(app, durable)`` on this test's key prefix; closed after."""
    yield from app_factory(redis_url, key_prefix, "itest")


@pytest.fixture
def tasks_run() -> Iterator[list[tuple[str, str]]]:
    """``(task name, task id)`` of every task a worker of this process starts (``task_prerun``)."""
    seen: list[tuple[str, str]] = []

    def record(task_id: str, task: Any, **_: Any) -> None:
        seen.append((task.name, task_id))

    signals.task_prerun.connect(record, weak=False)
    yield seen
    signals.task_prerun.disconnect(record)
