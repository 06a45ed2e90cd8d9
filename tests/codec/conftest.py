"""Shared pieces of the codec tests: a plain codec, a keyed codec and a place to put payloads."""

from __future__ import annotations

import pytest

from durable_celery.codec import Codec, Place


@pytest.fixture
def codec() -> Codec:
    return Codec()


@pytest.fixture
def keyed() -> Codec:
    return Codec([("k1", bytes(range(32)))])


@pytest.fixture
def place() -> Place:
    return Place("run-1", "step_completed", "s3")
