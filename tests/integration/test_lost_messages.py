"""A step message the broker lost is sent again, on a real worker and a real Redis.

Celery's Redis transport pops a message before it records it as unacknowledged, so a worker
killed in between loses it. Here the message is deleted from the queue outright: the recovery
sweep finds the run idle for ``durable_lost_message_timeout`` and sends the step again.
"""

from __future__ import annotations

import pytest
import redis

from durable_celery.testing.embedded import run_worker

from .support import AppFactory, broker_prefix, count_per_cid, wait_until

pytestmark = pytest.mark.timeout(60)


def test_a_step_message_the_broker_lost_is_sent_again(
    make_app: AppFactory, key_prefix: str, redis_url: str
) -> None:
    lost = f"lost-{key_prefix}"
    app, durable = make_app(
        durable_step_execution="dispatch",
        durable_lost_message_timeout=1.0,
        durable_sweep_interval=0.2,
    )

    @durable.step(queue=lost)
    def ship(order: str) -> str:
        return f"shipped:{order}"

    @durable.workflow
    def deliver(order: str) -> str:
        return ship(order)

    client = redis.Redis.from_url(redis_url)
    queue_key = f"{broker_prefix(key_prefix)}{lost}"
    with run_worker(app, concurrency=2):  # the default queue only: the step waits in `lost`
        handle = deliver.start("o-9")
        wait_until(lambda: client.llen(queue_key) == 1, what="the step's message")
        client.delete(queue_key)  # the broker lost it
    with run_worker(app, concurrency=2, queues=[app.conf.task_default_queue, lost]):
        assert handle.result(timeout=20) == "shipped:o-9"
    assert count_per_cid(durable.history(handle.run_id)) == {"s1": 1}
    client.close()
