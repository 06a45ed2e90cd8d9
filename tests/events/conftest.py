"""Each test gets its own Celery app and Durable: workflows and steps never leak between tests.

``durable`` is for the virtual-clock tests (memory store, no broker); ``make_app`` builds apps
on the session's real Redis, broker and event store isolated under the test's key prefix.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from celery import Celery

from durable_celery import Durable

AppFactory = Callable[..., tuple[Celery, Durable]]


@pytest.fixture
def durable() -> Durable:
    return Durable(Celery("events", broker="memory://", set_as_current=False))


@pytest.fixture
def make_app(redis_url: str, key_prefix: str) -> Iterator[AppFactory]:
    """``make_app(**settings)`` -> ``(app, durable)`` on this test's key prefix; closed after."""
    made: list[tuple[Celery, Durable]] = []

    def make(name: str = "events", **settings: Any) -> tuple[Celery, Durable]:
        app = Celery(name, set_as_current=False)
        app.conf.broker_url = redis_url
        app.conf.durable_redis_url = redis_url
        app.conf.durable_key_prefix = key_prefix
        app.conf.task_default_queue = f"q-{key_prefix}"
        app.conf.broker_transport_options = {
            "global_keyprefix": f"{key_prefix}:kombu:",  # deleted with the test's keys
            "polling_interval": 0.1,
        }
        app.conf.broker_connection_retry_on_startup = True
        app.conf.durable_timer_poll_interval = 0.05
        app.conf.update(settings)
        durable = Durable(app)
        made.append((app, durable))
        return app, durable

    yield make
    for app, durable in made:
        if durable._runtime is not None:
            durable._runtime.store.client.close()  # type: ignore[attr-defined]
        app.close()
