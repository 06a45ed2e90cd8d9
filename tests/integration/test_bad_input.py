"""Bad input on real Redis: refused with a clear error, and nothing recorded is ever changed."""

from __future__ import annotations

import threading
from typing import Any

import pytest
import redis

from durable_celery import (
    DecodingError,
    DecryptionError,
    EncodingError,
    UnknownWorkflowError,
    WorkflowArgumentsError,
)
from durable_celery.codec import Place
from durable_celery.replay.events import RUN_STARTED, NewEvent
from durable_celery.testing.embedded import run_worker

from .support import AppFactory, kinds, orchestrator_failures, raw_log, wait_until

pytestmark = pytest.mark.timeout(60)


def keys_of(client: redis.Redis, key_prefix: str, run_id: str) -> list[bytes]:
    return sorted(client.scan_iter(match=f"{key_prefix}:*{run_id}*"))


def checkout_app(make_app: AppFactory, **settings: Any) -> tuple[Any, Any, Any, Any]:
    app, durable = make_app(**settings)

    @durable.step(name="shop.price")
    def price(cart: dict[str, Any]) -> int:
        return sum(cart["items"])

    @durable.workflow(name="shop.checkout")
    def checkout(order_id: str, cart: dict[str, Any]) -> int:
        return price(cart)

    return app, durable, checkout, price


def test_an_unencodable_argument_is_refused_at_start_and_nothing_is_written(
    make_app: AppFactory, key_prefix: str, redis_client: redis.Redis
) -> None:
    _, _, checkout, _ = checkout_app(make_app)
    cart = {"items": [1, {"price": threading.Lock()}]}
    with pytest.raises(EncodingError, match=r"cart=.*'items\[1\]\.price' of type _thread\.lock"):
        checkout.start("o-1", cart, run_id="bad-arg")
    assert keys_of(redis_client, key_prefix, "bad-arg") == []
    assert redis_client.zscore(f"{key_prefix}:runs", "bad-arg") is None


def test_wrong_arguments_are_refused_at_start_and_nothing_is_written(
    make_app: AppFactory, key_prefix: str, redis_client: redis.Redis
) -> None:
    _, durable, checkout, _ = checkout_app(make_app)
    with pytest.raises(WorkflowArgumentsError, match=r"shop\.checkout.*\(order_id.*cart"):
        checkout.start("o-1", run_id="bad-call")
    with pytest.raises(WorkflowArgumentsError):
        durable.start("shop.checkout", "o-1", {"items": []}, coupon="X", run_id="bad-call")
    with pytest.raises(UnknownWorkflowError, match=r"'shop\.missing'"):
        durable.start("shop.missing", run_id="bad-call")
    assert keys_of(redis_client, key_prefix, "bad-call") == []


def test_a_tampered_payload_is_refused_as_corrupt(make_app: AppFactory) -> None:
    app, durable, checkout, _ = checkout_app(make_app)
    with run_worker(app, concurrency=2):
        handle = checkout.start("o-1", {"items": [1, 2]})
        assert handle.result(timeout=15) == 3
    codec = durable.runtime.codec
    done = next(e for e in durable.history(handle.run_id) if e.kind == "step_completed")
    place = Place(handle.run_id, done.kind, done.cid)
    assert codec.decode(done.payload, place) == 3
    # 0xc1 is the one byte msgpack never uses: the envelope opens, its body does not.
    with pytest.raises(DecodingError, match="corrupt payload"):
        codec.decode(done.payload[:2] + b"\xc1", place)
    with pytest.raises(DecodingError, match="not a durable_celery envelope"):
        codec.decode(b"\x93\x01\x02\x03", place)  # bare msgpack, as another tool would write


def test_a_tampered_encrypted_payload_fails_authentication(make_app: AppFactory) -> None:
    key = bytes(range(32))
    app, durable, checkout, _ = checkout_app(make_app, durable_encryption_keys={"k1": key})
    with run_worker(app, concurrency=2):
        handle = checkout.start("o-1", {"items": [40, 2]})
        assert handle.result(timeout=15) == 42
    done = next(e for e in durable.history(handle.run_id) if e.kind == "step_completed")
    flipped = bytearray(done.payload)
    flipped[-1] ^= 0x01
    with pytest.raises(DecryptionError, match="key id 'k1'"):
        durable.runtime.codec.decode(bytes(flipped), Place(handle.run_id, done.kind, done.cid))


@pytest.mark.parametrize(
    ("workflow", "payload", "error"),
    [
        ("shop.checkout", b"\xc1\x00\xc1", "corrupt payload"),
        ("shop.checkout", b"garbage", "not a durable_celery envelope"),
        ("shop.gone", None, "no workflow named 'shop.gone'"),
    ],
    ids=["corrupt-body", "not-an-envelope", "unknown-workflow"],
)
def test_a_run_this_worker_cannot_read_fails_the_pass_loudly_and_writes_nothing(
    make_app: AppFactory,
    key_prefix: str,
    redis_client: redis.Redis,
    workflow: str,
    payload: bytes | None,
    error: str,
) -> None:
    app, durable, checkout, _ = checkout_app(make_app)
    if payload is None:  # a valid input for a workflow this process does not know
        payload = durable.runtime.codec.encode(
            {"args": ["o-1", {"items": [1]}], "kwargs": {}}, Place("crafted", RUN_STARTED, "")
        )
    started = NewEvent(RUN_STARTED, "", {"workflow": workflow, "code": checkout.code_hash}, payload)
    assert durable.runtime.store.create_run("crafted", workflow, started, {})
    before = raw_log(redis_client, key_prefix, "crafted")
    durable.runtime.dispatcher.wake("crafted")

    with orchestrator_failures() as failures, run_worker(app, concurrency=2):
        wait_until(lambda: failures, timeout=15)
        # The fault is this worker's (a deploy or a key missing here), not the run's: the pass
        # fails with the clear error, and the log and status stay as they were, for a worker that
        # can read the run (the recovery sweep drives it again).
        assert error in str(failures[0])
        with pytest.raises(TimeoutError):
            durable.run("crafted").result(timeout=0.2)
    assert durable.run("crafted").status() == "running"
    assert raw_log(redis_client, key_prefix, "crafted") == before


def test_a_step_called_with_an_unencodable_argument_fails_the_run_naming_it(
    make_app: AppFactory,
) -> None:
    app, durable, _, price = checkout_app(make_app)

    @durable.workflow
    def careless(order_id: str) -> int:
        return price({"items": [1], "lock": threading.Lock()})

    with run_worker(app, concurrency=2):
        handle = careless.start("o-1")
        with pytest.raises(EncodingError, match=r"shop\.price\(cart=.*'lock'"):
            handle.result(timeout=15)
    assert kinds(durable.history(handle.run_id)) == ["run_started", "run_failed"]


@pytest.mark.parametrize("mode", ["inline", "dispatch"])
def test_a_step_result_that_cannot_be_stored_fails_the_step_at_once(
    make_app: AppFactory, mode: str
) -> None:
    app, durable = make_app(durable_step_execution=mode)
    attempts: list[int] = []

    @durable.step(name="shop.open_lock", retries=3, backoff=0.01)
    def open_lock() -> Any:
        attempts.append(1)
        return threading.Lock()

    @durable.workflow
    def flow() -> Any:
        return open_lock()

    with run_worker(app, concurrency=2):
        handle = flow.start()
        with pytest.raises(EncodingError, match=r"result of step shop\.open_lock"):
            handle.result(timeout=15)
    assert attempts == [1]  # storing would fail again: no retry
    # A step that failed inline, in its pass, is one entry; a dispatched one, two.
    scheduling = ["step_scheduled"] if mode == "dispatch" else []
    assert kinds(durable.history(handle.run_id)) == [
        "run_started",
        *scheduling,
        "step_failed",
        "run_failed",
    ]
