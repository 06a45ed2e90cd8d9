"""The Celery app of the gather chaos test, run by real worker processes.

``celery -A tests.chaos.gather_app worker`` builds it from ``GATHER_REDIS_URL``,
``GATHER_PREFIX`` and ``GATHER_QUEUE``; the test process builds the same app with
:func:`make_app` to start runs and read their logs.

Each branch of the fan-out reports when it starts and ends (its index, pid and attempt) to a
Redis list, and sleeps 0.3 to 1 s, so a test can find a process in the middle of a branch and
kill it.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any

import redis
from celery import Celery

from durable_celery import Durable, current_step, gather

from .settings import chaos_settings


def reports_key(prefix: str) -> str:
    return f"{prefix}:gather-chaos:reports"


def expected(n: int) -> list[int]:
    return [i * i + 1 for i in range(n)]


def branch_seconds(i: int) -> float:
    return 0.3 + (i % 8) * 0.1


def make_app(redis_url: str, prefix: str, queue: str) -> tuple[Celery, Durable, Any]:
    app = Celery("gather_chaos", broker=redis_url, set_as_current=False)
    app.conf.update(chaos_settings(redis_url, prefix, queue, "dispatch"))
    durable = Durable(app)
    clients: list[redis.Redis] = []  # made on first use, in the process that runs the step

    def report(event: str, i: int) -> None:
        info = current_step()
        assert info is not None
        if not clients:
            clients.append(redis.Redis.from_url(redis_url))
        record = {
            "event": event,
            "i": i,
            "pid": os.getpid(),
            "attempt": info.attempt,
            "t": time.time(),
        }
        clients[0].rpush(reports_key(prefix), json.dumps(record))

    @durable.step(name="gather_chaos.branch", retries=3, backoff=0.2)
    def branch(i: int) -> int:
        report("start", i)
        time.sleep(branch_seconds(i))
        report("end", i)
        return i * i + 1

    @durable.workflow(name="gather_chaos.fan_out")
    def fan_out(n: int) -> list[int]:
        return gather(*(branch.defer(i) for i in range(n)))

    return app, durable, fan_out


def _from_environment() -> tuple[Celery, Durable, Any]:
    prefix = os.environ.get("GATHER_PREFIX", "gather-chaos")
    return make_app(
        os.environ.get("GATHER_REDIS_URL", "redis://127.0.0.1:6379/0"),
        prefix,
        os.environ.get("GATHER_QUEUE", f"q-{prefix}"),
    )


app, durable, fan_out = _from_environment()
