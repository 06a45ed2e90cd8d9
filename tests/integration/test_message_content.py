"""A step message carrying its input: msgpack with the input as bytes when the app accepts
msgpack, JSON with base64 text when it does not, and the step task's own serializer when it
has one. Runs complete the same every way."""

from __future__ import annotations

import base64
import json
import os
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from celery import signals
from kombu import serialization

from durable_celery.integration.content import input_from_message
from durable_celery.testing.embedded import run_worker

from .support import AppFactory, broker_prefix

pytestmark = pytest.mark.timeout(60)

MSGPACK = "application/x-msgpack"
JSON = "application/json"


def queued(client: redis.Redis, key_prefix: str) -> list[dict[str, Any]]:
    """The messages waiting in the test app's default queue, as kombu's Redis transport stores
    them (a JSON envelope around the base64 body)."""
    key = f"{broker_prefix(key_prefix)}q-{key_prefix}"
    return [json.loads(raw) for raw in client.lrange(key, 0, -1)]  # type: ignore[union-attr]


def carried_input(message: dict[str, Any]) -> Any:
    body = base64.b64decode(message["body"])
    accept = [message["content-type"]]
    _, kwargs, _ = serialization.loads(
        body, message["content-type"], message["content-encoding"], accept=accept
    )
    return kwargs["__durable__"][4]


@pytest.fixture
def own_serializer() -> Iterator[str]:
    """A serializer a project registered and set on a step (as ``auth`` for signed messages)."""
    name = "test-own-json"
    serialization.register(
        name,
        json.dumps,
        json.loads,
        content_type="application/x-test-own",
        content_encoding="utf-8",
    )
    yield name
    serialization.registry.unregister(name)


@pytest.mark.parametrize(
    ("accept", "content_type"), [(None, MSGPACK), (["json"], JSON)], ids=["default", "json-only"]
)
def test_a_step_input_travels_as_bytes_only_where_the_app_accepts_msgpack(
    make_app: AppFactory,
    key_prefix: str,
    redis_client: redis.Redis,
    accept: list[str] | None,
    content_type: str,
) -> None:
    _, durable = make_app(**({} if accept is None else {"accept_content": accept}))

    @durable.step(name="shop.echo")
    def echo(blob: bytes) -> bytes:
        return blob

    payload = os.urandom(3000)
    durable.runtime.dispatcher.send_step(echo, "run-1", "s1", "", 1, payload=payload)
    [message] = queued(redis_client, key_prefix)
    assert message["content-type"] == content_type
    carried = carried_input(message)
    assert isinstance(carried, bytes) == (content_type == MSGPACK)
    assert input_from_message(carried) == payload


def test_msgpack_stops_when_the_project_removes_it_from_its_list_in_place(
    make_app: AppFactory, key_prefix: str, redis_client: redis.Redis
) -> None:
    app, durable = make_app()

    @durable.step(name="shop.echo")
    def echo(blob: bytes) -> bytes:
        return blob

    durable.runtime.dispatcher.send_step(echo, "run-1", "s1", "", 1, payload=b"one")
    app.conf.accept_content.remove("msgpack")
    durable.runtime.dispatcher.send_step(echo, "run-1", "s2", "", 1, payload=b"two")
    types = [m["content-type"] for m in reversed(queued(redis_client, key_prefix))]
    assert types == [MSGPACK, JSON]


def test_a_step_with_its_own_serializer_keeps_it(
    make_app: AppFactory, key_prefix: str, redis_client: redis.Redis, own_serializer: str
) -> None:
    _, durable = make_app(accept_content=["json", "msgpack", own_serializer])

    @durable.step(name="shop.echo", serializer=own_serializer)
    def echo(blob: bytes) -> bytes:
        return blob

    payload = os.urandom(300)
    durable.runtime.dispatcher.send_step(echo, "run-1", "s1", "", 1, payload=payload)
    [message] = queued(redis_client, key_prefix)
    assert message["content-type"] == "application/x-test-own"
    assert input_from_message(carried_input(message)) == payload


@pytest.mark.parametrize("accept", [None, ["json"]], ids=["default", "json-only"])
def test_a_run_whose_steps_carry_their_inputs_completes_either_way(
    make_app: AppFactory, accept: list[str] | None
) -> None:
    app, durable = make_app(**({} if accept is None else {"accept_content": accept}))

    @durable.step(name="shop.reverse", execution="dispatch")
    def reverse(blob: bytes) -> bytes:
        return blob[::-1]

    @durable.workflow(name="shop.twice")
    def twice(blob: bytes) -> bytes:
        return reverse(reverse(blob) + b"!")

    received: list[Any] = []

    def record(task: Any, kwargs: dict[str, Any], **_: Any) -> None:
        if task.name == "shop.reverse":
            received.append(kwargs["__durable__"][4])

    signals.task_prerun.connect(record, weak=False)
    blob = os.urandom(5000)
    try:
        with run_worker(app, concurrency=2):
            handle = twice.start(blob)
            assert handle.result(timeout=20) == b"!" + blob
    finally:
        signals.task_prerun.disconnect(record)
    # Both steps were sent with their inputs, as the app's accept_content allows.
    assert [type(carried) for carried in received] == [bytes if accept is None else str] * 2
