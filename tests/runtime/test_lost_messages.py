"""Steps whose task message was lost are sent again by the recovery sweep.

Celery's Redis transport pops a message before it records it as unacknowledged: a worker killed
in between takes the message along, and the run would wait for that step forever.
"""

from __future__ import annotations

import time

import pytest
from celery import Celery

from durable_celery import Durable
from durable_celery.config import DurableConfig
from durable_celery.replay.events import STEP_COMPLETED
from durable_celery.testing.local import LocalEnvironment

from .support import gather_of_squares


def drop_step(env: LocalEnvironment, cid: str) -> None:
    queue = env.dispatcher.queue
    queue.remove(next(item for item in queue if item[0] == "step" and item[3] == cid))


def test_a_step_whose_message_was_lost_is_sent_again_once_the_run_is_idle(
    durable: Durable,
) -> None:
    runs: list[int] = []
    squares = gather_of_squares(durable, runs)
    env = LocalEnvironment(durable, step_execution="dispatch", lost_message_timeout=0.1)
    handle = squares.start(3)
    env.step_once()  # the pass sends s1, s2, s3
    drop_step(env, "s2")  # taken by a worker that died before the broker knew
    env.run_until_idle()
    assert sorted(runs) == [0, 2] and handle.status() == "running"

    env.runtime.sweeper.sweep()
    assert not env.dispatcher.queue  # idle for less than the timeout: nothing sent yet
    time.sleep(0.15)
    env.runtime.sweeper.sweep()
    env.runtime.sweeper.sweep()  # a second sweeper in the same period sends nothing more
    assert [item[3] for item in env.dispatcher.queue] == ["s2"]
    assert env.result(handle) == [0, 1, 4]
    assert sorted(runs) == [0, 1, 2]
    completed = [e.cid for e in durable.history(handle.run_id) if e.kind == STEP_COMPLETED]
    assert sorted(completed) == ["s1", "s2", "s3"]


def test_without_a_lost_message_timeout_nothing_is_sent_again(durable: Durable) -> None:
    runs: list[int] = []
    squares = gather_of_squares(durable, runs)
    env = LocalEnvironment(durable, step_execution="dispatch", lost_message_timeout=0)
    handle = squares.start(2)
    env.step_once()
    drop_step(env, "s1")
    env.run_until_idle()
    time.sleep(0.1)
    env.runtime.sweeper.sweep()
    assert not env.dispatcher.queue and handle.status() == "running"


@pytest.mark.parametrize(
    ("broker", "options", "expected"),
    [
        ("redis://localhost:6379/0", {}, 3600.0),
        ("redis://localhost:6379/0", {"visibility_timeout": 42}, 42.0),
        ("rediss://localhost:6380/0", {"visibility_timeout": 7}, 7.0),
        ("amqp://guest@localhost//", {"visibility_timeout": 42}, 0.0),
        (None, {}, 0.0),
    ],
)
def test_the_lost_message_timeout_follows_the_brokers_visibility_timeout(
    broker: str | None, options: dict[str, int], expected: float
) -> None:
    conf = {"broker_transport_options": options}
    assert DurableConfig.from_mapping(conf, broker).lost_message_timeout == expected
    conf["durable_lost_message_timeout"] = 5  # type: ignore[assignment]
    assert DurableConfig.from_mapping(conf, broker).lost_message_timeout == 5


def test_a_negative_lost_message_timeout_is_refused() -> None:
    app = Celery("t", broker="memory://")
    app.conf.durable_lost_message_timeout = -1
    with pytest.raises(Exception, match="durable_lost_message_timeout must be 0"):
        Durable(app).runtime  # noqa: B018 - building the runtime validates the settings
