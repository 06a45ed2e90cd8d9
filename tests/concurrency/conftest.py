"""Fixtures of the concurrency tests: a fresh Durable per test (memory broker) for the
synchronous environments, and ``make_app`` for the tests against the session's real Redis."""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator

import pytest
from celery import Celery
from integration.support import AppFactory, app_factory

from durable_celery import Durable

# When a property fails, Hypothesis imports libcst to suggest a patch; the libcst installed here
# warns on import, and `filterwarnings = error` would turn that into an INTERNALERROR hiding the
# falsifying example. Import it once now, with that warning muted.
with contextlib.suppress(Exception), warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    import hypothesis.extra._patching  # noqa: F401


@pytest.fixture
def durable() -> Durable:
    """Steps and workflows never leak between tests: each test registers its own."""
    return Durable(Celery("t", broker="memory://"))


@pytest.fixture
def make_app(redis_url: str, key_prefix: str) -> Iterator[AppFactory]:
    """``make_app(**settings)`` -> ``(app, durable)`` on this test's key prefix; closed after."""
    yield from app_factory(redis_url, key_prefix, "ctest")
