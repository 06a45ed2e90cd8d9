"""Helpers shared by the contract suite's modules."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from typing import Any

from durable_celery.replay.events import RUN_STARTED, Event, NewEvent
from durable_celery.store import EventStore

ENTRY_ID = re.compile(r"^\d+-\d+$")


def started(**meta: Any) -> NewEvent:
    return NewEvent(RUN_STARTED, "", {"workflow": "wf", **meta}, b"input")


def make_run(store: EventStore, run_id: str = "r1", workflow: str = "wf") -> str:
    assert store.create_run(run_id, workflow, started(), {})
    return run_id


def shape(events: list[Event]) -> list[tuple[str, str, dict[str, Any], bytes | None]]:
    return [(e.kind, e.cid, e.meta, e.payload) for e in events]


def last_id(store: EventStore, run_id: str) -> str:
    return store.read_since(run_id, None)[-1].entry_id


def wait_until(predicate: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.01)


def finish(store: EventStore, run_id: str = "r1", token: str = "t") -> None:
    """Run an empty pass to its end, clearing the wake flag."""
    assert store.acquire_lease(run_id, token, 10_000)
    assert store.finish_pass(run_id, token, last_id(store, run_id))
