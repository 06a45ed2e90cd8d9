"""Helpers of the concurrency tests: drive a LocalEnvironment item by item, read logs."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from typing import Any

from durable_celery.replay import events as ev
from durable_celery.replay.events import Event
from durable_celery.testing.local import LocalDispatcher, LocalEnvironment


def run_step(env: LocalEnvironment, cid: str, run_id: str | None = None) -> None:
    """Run the queued attempt of step ``cid`` (of ``run_id``, if given) before anything else."""
    queue = env.dispatcher.queue
    (item,) = [i for i in queue if i[0] == "step" and i[3] == cid and run_id in (None, i[2])]
    queue.remove(item)
    queue.appendleft(item)
    env.step_once()


def run_steps(env: LocalEnvironment, cids: Iterable[str]) -> None:
    for cid in cids:
        run_step(env, cid)


def run_wake(env: LocalEnvironment, run_id: str | None = None) -> None:
    """Run the queued orchestrator pass (of ``run_id``, if given) before anything else."""
    queue = env.dispatcher.queue
    item = next(i for i in queue if i[0] == "wake" and run_id in (None, i[1]))
    queue.remove(item)
    queue.appendleft(item)
    env.step_once()


def queued_steps(env: LocalEnvironment) -> list[str]:
    return [item[3] for item in env.dispatcher.queue if item[0] == "step"]


def queued_wakes(env: LocalEnvironment) -> list[str]:
    return [item[1] for item in env.dispatcher.queue if item[0] == "wake"]


def outcomes_per_cid(history: list[Event]) -> Counter[str]:
    return Counter(e.cid for e in history if e.kind in ev.OUTCOME_KINDS)


def of_kind(history: list[Event], kind: str) -> list[str]:
    """Correlation ids of the entries of ``kind``, in log order."""
    return [e.cid for e in history if e.kind == kind]


def shape(history: list[Event]) -> list[tuple[str, str, dict[str, Any]]]:
    """A log without what differs between two identical runs: entry ids and step durations."""
    return [(e.kind, e.cid, {k: v for k, v in e.meta.items() if k != "ms"}) for e in history]


class RevokingDispatcher(LocalDispatcher):
    """A LocalDispatcher with Celery's ``revoke``: records the task ids, and (like a worker
    that has not received them yet) drops their queued messages when ``discard`` is set."""

    def __init__(self, discard: bool = False) -> None:
        super().__init__()
        self.discard = discard
        self.revoked: list[list[str]] = []

    def revoke(self, task_ids: list[str]) -> None:
        self.revoked.append(list(task_ids))
        if self.discard:
            for item in list(self.queue):
                if item[0] == "step" and f"{item[2]}:{item[3]}" in task_ids:
                    self.queue.remove(item)
