"""Each test gets its own Celery app and Durable: workflows and steps never leak between tests.

``durable`` is for the virtual-clock tests (memory store, no broker); ``make_app`` builds apps
on the session's real Redis (or on another server, e.g. one started with AOF), isolated under
the test's key prefix.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from celery import Celery

from durable_celery import Durable

from .support import configure

AppFactory = Callable[..., tuple[Celery, Durable]]


@pytest.fixture
def durable() -> Durable:
    return Durable(Celery("timers", broker="memory://", set_as_current=False))


@pytest.fixture
def make_app(redis_url: str, key_prefix: str) -> Iterator[AppFactory]:
    """``make_app(url=None, **settings)`` -> ``(app, durable)``; closed after the test."""
    made: list[tuple[Celery, Durable]] = []

    def make(
        name: str = "timers", *, url: str | None = None, **settings: Any
    ) -> tuple[Celery, Durable]:
        app = Celery(name, set_as_current=False)
        configure(app, url or redis_url, key_prefix, **settings)
        durable = Durable(app)
        made.append((app, durable))
        return app, durable

    yield make
    for app, durable in made:
        if durable._runtime is not None:
            durable._runtime.store.client.close()  # type: ignore[attr-defined]
        app.close()
