"""Each test gets its own Celery app and Durable: steps and workflows never leak between tests."""

from __future__ import annotations

import pytest
from celery import Celery

from durable_celery import Durable


@pytest.fixture
def durable() -> Durable:
    return Durable(Celery("t", broker="memory://"))
