"""Small helpers for the event tests."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

from durable_celery.replay.events import Event

T = TypeVar("T")


def kinds(history: list[Event]) -> list[str]:
    return [event.kind for event in history]


def of_kind(history: list[Event], kind: str) -> list[Event]:
    return [event for event in history if event.kind == kind]


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


class Unstorable:
    """A value the codec refuses (an unregistered class)."""

    def __repr__(self) -> str:
        return "<Unstorable>"
