"""Each test gets its own Celery app and Durable: steps and workflows never leak between tests."""

from __future__ import annotations

import contextlib
import warnings

import pytest
from celery import Celery

from durable_celery import Durable

# When a property fails, Hypothesis imports libcst to suggest a patch; the libcst installed here
# warns on import (mypy_extensions.TypedDict), and `filterwarnings = error` turns that into an
# INTERNALERROR that hides the falsifying example. Import it once now, with that warning muted.
with contextlib.suppress(Exception), warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    import hypothesis.extra._patching  # noqa: F401


@pytest.fixture
def durable() -> Durable:
    return Durable(Celery("t", broker="memory://"))
