"""The Celery app the chaos tests run in real worker processes, configured from the environment.

``celery -A tests.chaos.chaos_app worker`` builds it from ``CHAOS_REDIS_URL``, ``CHAOS_PREFIX``,
``CHAOS_QUEUE`` and ``CHAOS_EXECUTION``; the test process builds the same app with
:func:`make_app` to start runs and read their logs.

The middle step, ``chaos.slow``, counts its executions in Redis (``INCR``), reports its pid, and
on its first execution only sleeps long enough to be killed mid-step.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any

import redis
from celery import Celery

from durable_celery import Durable, current_step

#: Long enough that the first execution is always killed, never finished.
SLOW_SECONDS = 30.0


def executions_key(prefix: str, step: str) -> str:
    return f"{prefix}:chaos:{step}:executions"


def reports_key(prefix: str, step: str) -> str:
    return f"{prefix}:chaos:{step}:reports"


def make_app(
    redis_url: str, prefix: str, queue: str, execution: str = "dispatch"
) -> tuple[Celery, Durable, Any]:
    app = Celery("chaos", broker=redis_url, set_as_current=False)
    app.conf.update(
        task_default_queue=queue,
        broker_connection_retry_on_startup=True,
        worker_hijack_root_logger=False,
        # All broker keys under the test's prefix. Unacked messages of a dead worker come back
        # after ``visibility_timeout``: a new worker restores them at start and then every
        # ``unacked_restore_interval * unacked_restore_throttle`` seconds (kombu's defaults,
        # 1 hour and 100 s, would outlast the test).
        broker_transport_options={
            "global_keyprefix": f"{prefix}:kombu:",
            "visibility_timeout": 5,
            "unacked_restore_interval": 1,
            "unacked_restore_throttle": 1,
        },
        durable_redis_url=redis_url,
        durable_key_prefix=prefix,
        durable_step_execution=execution,
        durable_timer_poll_interval=0.1,
        # A pass killed with its lease held blocks the run's next pass for this long.
        durable_lease_timeout=5.0,
        durable_sweep_interval=2.0,  # a lost wake is found again this soon
    )
    durable = Durable(app)
    clients: list[redis.Redis] = []  # made on first use, in the worker process that runs steps

    def report(step: str) -> int:
        info = current_step()
        assert info is not None
        if not clients:
            clients.append(redis.Redis.from_url(redis_url))
        client = clients[0]
        execution = int(client.incr(executions_key(prefix, step)))
        record = {"pid": os.getpid(), "attempt": info.attempt, "execution": execution}
        client.rpush(reports_key(prefix, step), json.dumps(record))
        return execution

    @durable.step(name="chaos.before")
    def before(x: int) -> int:
        report("before")
        return x + 1

    @durable.step(name="chaos.slow")
    def slow(x: int) -> int:
        if report("slow") == 1:
            time.sleep(SLOW_SECONDS)
        return x * 2

    @durable.step(name="chaos.after")
    def after(x: int) -> int:
        report("after")
        return x + 100

    @durable.workflow(name="chaos.pipeline")
    def pipeline(x: int) -> int:
        return after(slow(before(x)))

    return app, durable, pipeline


def _from_environment() -> tuple[Celery, Durable, Any]:
    prefix = os.environ.get("CHAOS_PREFIX", "chaos")
    return make_app(
        os.environ.get("CHAOS_REDIS_URL", "redis://127.0.0.1:6379/0"),
        prefix,
        os.environ.get("CHAOS_QUEUE", f"q-{prefix}"),
        os.environ.get("CHAOS_EXECUTION", "dispatch"),
    )


app, durable, pipeline = _from_environment()
