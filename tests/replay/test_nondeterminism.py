"""Nondeterminism: code that no longer matches the log blocks the run; a fix and resume continue it.

Each test "deploys" a version of one workflow (the same function, rebuilt around another body, as
a re-import would) while a run waits on a dispatched step, then lets the run go on.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable
from typing import Any

import pytest

from durable_celery import Durable, WorkflowBlocked
from durable_celery.replay.events import Event
from durable_celery.testing.local import LocalEnvironment
from durable_celery.workflow.step import StepDefinition

Body = Callable[[int], int]


def deploy(durable: Durable, body: Body) -> None:
    """Register ``body`` as the code of workflow ``checkout`` (same origin every time)."""

    def checkout(x: int) -> int:
        return body(x)

    durable.workflow(name="checkout")(checkout)


def new_worker(env: LocalEnvironment) -> None:
    """What a deploy does to a worker: a fresh process holds no parked runs and no caches."""
    env.runtime.reset_process_caches()


def line_of(fn: Callable[..., Any], needle: str) -> int:
    lines, first = inspect.getsourcelines(fn)
    (index,) = [i for i, line in enumerate(lines) if needle in line]
    return first + index


class Shop:
    """Two steps and a counter of their real executions."""

    def __init__(self, durable: Durable) -> None:
        self.calls: list[str] = []

        @durable.step
        def reserve(x: int) -> int:
            self.calls.append("reserve")
            return x + 1

        @durable.step
        def charge(x: int) -> int:
            self.calls.append("charge")
            return x * 10

        @durable.step
        def refund(x: int) -> int:
            self.calls.append("refund")
            return -x

        self.reserve: StepDefinition[[int], int] = reserve
        self.charge: StepDefinition[[int], int] = charge
        self.refund: StepDefinition[[int], int] = refund

    def original(self, x: int) -> int:
        y = self.reserve(x)
        return self.charge(y)


def start_and_wait_on_second_step(durable: Durable, shop: Shop) -> tuple[Any, LocalEnvironment]:
    deploy(durable, shop.original)
    env = LocalEnvironment(durable, step_execution="dispatch")
    handle = durable.start("checkout", 1)
    env.step_once()  # pass 1: schedules reserve (s1)
    env.step_once()  # reserve runs; its outcome wakes the run
    env.step_once()  # pass 2: schedules charge (s2)
    assert [item[0] for item in env.dispatcher.queue] == ["step"]
    return handle, env


def entries(events: list[Event]) -> list[tuple[str, str, str]]:
    return [(e.entry_id, e.kind, e.cid) for e in events]


def test_calling_another_step_than_the_log_recorded_blocks_the_run(durable: Durable) -> None:
    shop = Shop(durable)
    handle, env = start_and_wait_on_second_step(durable, shop)

    def changed(x: int) -> int:
        y = shop.reserve(x)
        return shop.refund(y)  # was: charge(y)

    deploy(durable, changed)
    new_worker(env)
    before = durable.history(handle.run_id)
    env.run_until_idle()

    assert handle.status() == "blocked"
    after = durable.history(handle.run_id)
    assert entries(after[: len(before)]) == entries(before)  # nothing removed or rewritten
    assert [e.kind for e in after[len(before) :]] == ["step_completed", "run_blocked"]
    message = after[-1].meta["error"]
    assert "not deterministic" in message
    assert f"at s2 the log recorded step {shop.charge.name!r}" in message
    assert f"now calls step {shop.refund.name!r}" in message
    assert f"{__file__}:{line_of(changed, 'shop.refund(y)')}" in message
    assert "resume" in message
    with pytest.raises(WorkflowBlocked, match=re.escape(f"now calls step {shop.refund.name!r}")):
        handle.result()
    assert shop.calls == ["reserve", "charge"]  # the diverging call never ran


def test_resuming_a_blocked_run_after_restoring_the_code_completes_it(durable: Durable) -> None:
    shop = Shop(durable)
    handle, env = start_and_wait_on_second_step(durable, shop)

    def changed(x: int) -> int:
        return shop.refund(shop.reserve(x))

    deploy(durable, changed)
    new_worker(env)
    env.run_until_idle()
    assert handle.status() == "blocked"

    deploy(durable, shop.original)
    assert handle.resume() is True
    assert env.result(handle) == 20
    assert handle.status() == "completed"
    kinds = [e.kind for e in durable.history(handle.run_id)]
    assert kinds[-3:] == ["run_blocked", "run_resumed", "run_completed"]
    assert shop.calls == ["reserve", "charge"]  # resuming replays: no step runs twice


def test_resuming_without_a_fix_blocks_again_and_a_later_resume_still_works(
    durable: Durable,
) -> None:
    shop = Shop(durable)
    handle, env = start_and_wait_on_second_step(durable, shop)

    def changed(x: int) -> int:
        return shop.refund(shop.reserve(x))

    deploy(durable, changed)
    new_worker(env)
    env.run_until_idle()
    assert handle.resume() is True
    env.run_until_idle()
    assert handle.status() == "blocked"
    assert handle.resume() is True  # a new block: a new resume is accepted

    deploy(durable, shop.original)
    assert env.result(handle) == 20
    kinds = [e.kind for e in durable.history(handle.run_id)]
    assert kinds.count("run_blocked") == 2
    assert kinds.count("run_resumed") == 2


def test_resume_refuses_a_run_that_is_not_blocked(durable: Durable) -> None:
    shop = Shop(durable)
    handle, env = start_and_wait_on_second_step(durable, shop)
    assert handle.resume() is False
    assert env.result(handle) == 20
    assert handle.resume() is False


def test_calling_the_same_step_with_other_arguments_blocks_the_run(durable: Durable) -> None:
    shop = Shop(durable)
    handle, env = start_and_wait_on_second_step(durable, shop)

    def changed(x: int) -> int:
        y = shop.reserve(x)
        return shop.charge(y + 1)  # was: charge(y)

    deploy(durable, changed)
    new_worker(env)
    env.run_until_idle()

    assert handle.status() == "blocked"
    message = durable.history(handle.run_id)[-1].meta["error"]
    hashes = re.findall(r"argument hash (s?[0-9a-f]{16})", message)
    assert len(hashes) == 2 and hashes[0] != hashes[1]
    recorded = next(e for e in durable.history(handle.run_id) if e.cid == "s2")
    assert hashes[0] == recorded.meta["h"]
    assert message.count(repr(shop.charge.name)) == 2
    assert f"{__file__}:{line_of(changed, 'shop.charge(y + 1)')}" in message


def test_returning_without_making_a_recorded_call_blocks_the_run(durable: Durable) -> None:
    shop = Shop(durable)
    handle, env = start_and_wait_on_second_step(durable, shop)

    def changed(x: int) -> int:
        return shop.reserve(x)  # the charge call was removed

    deploy(durable, changed)
    new_worker(env)
    env.run_until_idle()

    assert handle.status() == "blocked"
    message = durable.history(handle.run_id)[-1].meta["error"]
    assert "returned without making calls the log recorded" in message
    assert f"s2 ({shop.charge.name})" in message
    with pytest.raises(WorkflowBlocked):
        handle.result()
    assert "run_completed" not in [e.kind for e in durable.history(handle.run_id)]


def test_a_blocked_run_ignores_wakes_until_it_is_resumed(durable: Durable) -> None:
    shop = Shop(durable)
    handle, env = start_and_wait_on_second_step(durable, shop)

    def changed(x: int) -> int:
        return shop.refund(shop.reserve(x))

    deploy(durable, changed)
    new_worker(env)
    env.run_until_idle()
    length = len(durable.history(handle.run_id))

    deploy(durable, shop.original)
    env.dispatcher.wake(handle.run_id)  # a stray wake (redelivery, recovery sweep)
    env.run_until_idle()
    assert handle.status() == "blocked"
    assert len(durable.history(handle.run_id)) == length


def test_code_redeployed_in_the_same_process_is_replayed_not_the_parked_old_code(
    durable: Durable,
) -> None:
    shop = Shop(durable)
    handle, env = start_and_wait_on_second_step(durable, shop)
    assert len(env.runtime.live) == 1  # the old code is parked, waiting for charge

    def changed(x: int) -> int:
        return shop.refund(shop.reserve(x))

    deploy(durable, changed)  # e.g. a module re-imported by an autoreloader
    env.run_until_idle()

    assert handle.status() == "blocked"
    error = durable.history(handle.run_id)[-1].meta["error"]
    assert f"now calls step {shop.refund.name!r}" in error
