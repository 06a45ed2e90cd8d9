"""Durable messages are published without ``Celery.send_task``, yet are the messages it sends.

Each case publishes the same task call twice, once through ``app.send_task`` (as the dispatcher
did) and once through ``TaskPublisher``, and compares everything ``before_task_publish`` sees
(body, headers, properties, exchange, routing key, declared queues, retry policy) and where the
message lands, ids aside.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import redis
from celery import Celery, signals
from kombu import Queue

from durable_celery.integration.publish import TaskPublisher

from .support import AppFactory

pytestmark = pytest.mark.timeout(60)

#: Fields that name the message itself, so differ between two sends.
IDS = {"id", "correlation_id", "root_id", "parent_id"}
#: send_task also copies these into the message properties; the worker reads them from the
#: headers, where both paths put them.
REPRS = {"argsrepr", "kwargsrepr"}


@pytest.fixture
def published() -> Iterator[list[dict[str, Any]]]:
    seen: list[dict[str, Any]] = []

    def record(
        sender: str, body: Any, headers: dict[str, Any], properties: dict[str, Any], **rest: Any
    ) -> None:
        seen.append(
            {
                "task": sender,
                "body": body,
                "headers": {k: v for k, v in headers.items() if k not in IDS},
                "properties": {k: v for k, v in properties.items() if k not in IDS | REPRS},
                "exchange": rest.get("exchange"),
                "routing_key": rest.get("routing_key"),
                "declare": [getattr(q, "name", q) for q in rest.get("declare") or ()],
                "retry_policy": rest.get("retry_policy"),
            }
        )

    signals.before_task_publish.connect(record, weak=False)
    yield seen
    signals.before_task_publish.disconnect(record)


def both_ways(
    app: Celery, task: Any, options: dict[str, Any], seen: list[dict[str, Any]]
) -> tuple[dict[str, Any], dict[str, Any]]:
    kwargs = {"__durable__": ["run", "s1", "", 1]}
    reprs = {"argsrepr": "()", "kwargsrepr": "{run: run, step: s1, attempt: 1}"}
    app.send_task(
        task.name,
        kwargs=kwargs,
        task_id="t-1",
        ignore_result=True,
        add_to_parent=False,
        **reprs,
        **options,
    )
    TaskPublisher(app).send(
        task, "t-2", (), kwargs, reprs["argsrepr"], reprs["kwargsrepr"], dict(options)
    )
    assert len(seen) == 2
    # The first send declared the queue on this connection, so the second need not; that
    # case has its own test below.
    assert seen[0]["declare"] and not seen[1]["declare"]
    seen[1]["declare"] = seen[0]["declare"]
    return seen[0], seen[1]


def queue_lengths(app: Celery, *names: str) -> dict[str, int]:
    """Messages waiting in each queue, over its priority lists (kombu's ``<name>\\x06\\x16<n>``)."""
    prefix = app.conf.broker_transport_options["global_keyprefix"]
    client = redis.Redis.from_url(app.conf.broker_url)
    try:
        return {
            name: sum(
                client.llen(key)
                for key in client.scan_iter(match=f"{prefix}{name}*")
                if key.decode()
                in (f"{prefix}{name}", *(f"{prefix}{name}\x06\x16{n}" for n in range(10)))
            )
            for name in names
        }
    finally:
        client.close()


def test_a_step_message_is_the_one_send_task_builds(
    make_app: AppFactory, published: list[dict[str, Any]]
) -> None:
    app, durable = make_app()

    @durable.step(execution="dispatch", queue="steps", priority=3, time_limit=30)
    def work() -> None: ...

    via_send_task, via_publisher = both_ways(
        app, work.task, {"queue": "steps", "priority": 3}, published
    )
    assert via_publisher == via_send_task
    assert via_publisher["routing_key"] == "steps"
    assert via_publisher["headers"]["timelimit"] == [30, None]
    assert via_publisher["properties"]["priority"] == 3
    assert queue_lengths(app, "steps") == {"steps": 2}


def test_task_routes_and_task_queues_route_it_as_they_route_send_task(
    make_app: AppFactory, published: list[dict[str, Any]]
) -> None:
    app, durable = make_app(
        task_routes={"*.routed": {"queue": "elsewhere"}},
        task_queues=[Queue("elsewhere", routing_key="el.#")],
    )

    @durable.step(execution="dispatch", name="x.routed")
    def routed() -> None: ...

    via_send_task, via_publisher = both_ways(app, routed.task, {}, published)
    assert via_publisher == via_send_task
    assert via_publisher["declare"] == ["elsewhere"]
    assert queue_lengths(app, "elsewhere") == {"elsewhere": 2}


def test_a_declared_queue_is_not_declared_again_on_the_same_connection(
    make_app: AppFactory, published: list[dict[str, Any]]
) -> None:
    app, durable = make_app()

    @durable.step(execution="dispatch", queue="again")
    def work() -> None: ...

    publisher = TaskPublisher(app)
    for n in range(3):
        publisher.send(work.task, f"t-{n}", (), {}, "()", "{}", {"queue": "again"})
    assert [p["declare"] for p in published] == [["again"], [], []]
    with app.producer_or_acquire() as producer:
        producer.connection.declared_entities.clear()  # what kombu does when it reconnects
    publisher.send(work.task, "t-3", (), {}, "()", "{}", {"queue": "again"})
    assert published[-1]["declare"] == ["again"]
    assert queue_lengths(app, "again") == {"again": 4}


def test_a_countdown_goes_through_send_task(
    make_app: AppFactory, published: list[dict[str, Any]]
) -> None:
    app, durable = make_app()

    @durable.step(execution="dispatch")
    def work() -> None: ...

    TaskPublisher(app).send(work.task, "t-1", (), {}, "()", "{}", {"countdown": 60})
    assert published[0]["headers"]["eta"] is not None
