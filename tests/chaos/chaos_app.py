"""The Celery app the chaos tests run in real worker processes, configured from the environment.

``celery -A tests.chaos.chaos_app worker`` builds it from ``CHAOS_REDIS_URL``, ``CHAOS_PREFIX``,
``CHAOS_QUEUE`` and ``CHAOS_EXECUTION``; the test process builds the same app with
:func:`make_app` to start runs and read their logs.

The middle step, ``chaos.slow``, counts its executions in Redis (``INCR``), reports its pid, and
on its first execution only sleeps long enough to be killed mid-step.

With ``CHAOS_KILL_AFTER_SENDING=<task name>``, the first worker process that publishes a message
for that task SIGKILLs itself right after the broker has it: a pass that sends a step before
recording it dies in between. With ``CHAOS_KILL_AFTER_RECORDING_AHEAD=1``, the first one that
records a step's outcome together with the next step (speculative continuation) dies right
after, before the step's task message is acknowledged.
"""

from __future__ import annotations

import json
import os
import signal
import time
from typing import Any

import redis
from celery import Celery, signals

from durable_celery import Durable, current_step

from .settings import chaos_settings

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
    app.conf.update(chaos_settings(redis_url, prefix, queue, execution))
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

    # With ``ballast`` (bytes), a step also passes it on, turned by one byte: large inputs and
    # outcomes, each step's own.
    @durable.step(name="chaos.before")
    def before(x: int, ballast: bytes = b"") -> Any:
        report("before")
        return (x + 1, turn(ballast)) if ballast else x + 1

    @durable.step(name="chaos.slow")
    def slow(x: int, ballast: bytes = b"") -> Any:
        if report("slow") == 1:
            time.sleep(SLOW_SECONDS)
        return (x * 2, turn(ballast)) if ballast else x * 2

    @durable.step(name="chaos.after")
    def after(x: int, ballast: bytes = b"") -> Any:
        report("after")
        return (x + 100, turn(ballast)) if ballast else x + 100

    @durable.workflow(name="chaos.pipeline")
    def pipeline(x: int, ballast: bytes = b"") -> Any:
        if not ballast:
            return after(slow(before(x)))
        return after(*slow(*before(x, ballast)))

    return app, durable, pipeline


def turn(ballast: bytes) -> bytes:
    return ballast[1:] + ballast[:1]


def killed_key(prefix: str) -> str:
    return f"{prefix}:chaos:killed-after-sending"


def kill_after_sending(redis_url: str, prefix: str, task_name: str) -> None:
    """The first process to publish a ``task_name`` message dies at once (SIGKILL), once."""
    client = redis.Redis.from_url(redis_url)

    def die(sender: str | None = None, **_: Any) -> None:
        if sender == task_name and client.set(killed_key(prefix), os.getpid(), nx=True):
            os.kill(os.getpid(), signal.SIGKILL)

    signals.after_task_publish.connect(die, weak=False)


def ahead_killed_key(prefix: str) -> str:
    return f"{prefix}:chaos:killed-after-recording-ahead"


def kill_after_recording_ahead(redis_url: str, prefix: str) -> None:
    """The first process whose ``record_ahead`` finishes a pass (a step's outcome, the next
    step's scheduling, the pass's end: the next step already sent) dies at once, once: before
    the step's own task message is acknowledged."""
    from durable_celery.store import RedisEventStore

    client = redis.Redis.from_url(redis_url)
    record_ahead = RedisEventStore.record_ahead

    def dies_after(self: RedisEventStore, run_id: str, key: str, *args: Any, **kw: Any) -> Any:
        result = record_ahead(self, run_id, key, *args, **kw)
        victim = json.dumps({"pid": os.getpid(), "cid": key})
        if result.status == "finished" and client.set(ahead_killed_key(prefix), victim, nx=True):
            os.kill(os.getpid(), signal.SIGKILL)
        return result

    RedisEventStore.record_ahead = dies_after  # type: ignore[method-assign]


def _from_environment() -> tuple[Celery, Durable, Any]:
    prefix = os.environ.get("CHAOS_PREFIX", "chaos")
    victim = os.environ.get("CHAOS_KILL_AFTER_SENDING")
    if victim:
        kill_after_sending(os.environ["CHAOS_REDIS_URL"], prefix, victim)
    if os.environ.get("CHAOS_KILL_AFTER_RECORDING_AHEAD"):
        kill_after_recording_ahead(os.environ["CHAOS_REDIS_URL"], prefix)
    return make_app(
        os.environ.get("CHAOS_REDIS_URL", "redis://127.0.0.1:6379/0"),
        prefix,
        os.environ.get("CHAOS_QUEUE", f"q-{prefix}"),
        os.environ.get("CHAOS_EXECUTION", "dispatch"),
    )


app, durable, pipeline = _from_environment()
