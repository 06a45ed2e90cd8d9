"""Encryption end to end: payloads in Redis are ciphertext, bound to their place, keyed by id."""

from __future__ import annotations

import base64
import os
from typing import Any

import msgpack
import pytest
import redis
from celery import Celery

from durable_celery import DecryptionError, Durable
from durable_celery.codec import Place
from durable_celery.testing.embedded import run_worker

from .support import AppFactory, log_key, orchestrator_failures, raw_log, wait_until

pytestmark = pytest.mark.timeout(60)

MARKER = "PLAINTEXT-MARKER-4111111111111111"


def new_key() -> str:
    return base64.b64encode(os.urandom(32)).decode()


def shop(make_app: AppFactory, **settings: Any) -> tuple[Celery, Durable, Any]:
    """An app whose one workflow passes a card number through a step."""
    app, durable = make_app(**settings)

    @durable.step(name="shop.tokenize")
    def tokenize(card: str) -> str:
        return f"tok[{card}]"

    @durable.workflow(name="shop.pay")
    def pay(card: str) -> dict[str, str]:
        return {"token": tokenize(card), "card": card}

    return app, durable, pay


def test_an_encrypted_run_completes_and_redis_never_holds_the_plaintext(
    make_app: AppFactory, key_prefix: str, redis_client: redis.Redis
) -> None:
    app, _, pay = shop(make_app, durable_encryption_keys={"k1": new_key()})

    with run_worker(app, concurrency=2):
        handle = pay.start(MARKER)
        assert handle.result(timeout=15) == {"token": f"tok[{MARKER}]", "card": MARKER}

    entries = raw_log(redis_client, key_prefix, handle.run_id)
    payloads = [fields[b"p"] for _, fields in entries if b"p" in fields]
    # An inline step is one entry: its arguments are sealed into its meta ("in").
    metas = [msgpack.unpackb(fields[b"m"]) for _, fields in entries]
    payloads += [meta["in"] for meta in metas if "in" in meta]
    assert len(payloads) == 4  # run input, step arguments, step result, run result
    for _, fields in entries:
        for value in fields.values():
            assert MARKER.encode() not in value
            assert b"4111111111111111" not in value
    # Every payload names the key it was sealed with (magic, flags, key id length, key id).
    assert all(p[3:5] == b"k1" for p in payloads)
    for key in redis_client.scan_iter(match=f"{key_prefix}:*"):
        if redis_client.type(key) == b"string":
            assert MARKER.encode() not in redis_client.get(key)


@pytest.mark.parametrize("keys", [{"k1": new_key()}, {"k2": new_key()}], ids=["k1-other", "k2"])
def test_reading_a_run_with_the_wrong_key_names_the_key_and_changes_nothing(
    make_app: AppFactory, key_prefix: str, redis_client: redis.Redis, keys: dict[str, str]
) -> None:
    app, _, pay = shop(make_app, durable_encryption_keys={"k1": new_key()})
    with run_worker(app, concurrency=2):
        handle = pay.start("4242")
        handle.result(timeout=15)
    before = raw_log(redis_client, key_prefix, handle.run_id)

    _, intruder, _ = shop(make_app, durable_encryption_keys=keys)
    history = intruder.history(handle.run_id)
    assert [e.kind for e in history][-1] == "run_completed"
    codec = intruder.runtime.codec
    for event in history:
        if event.payload is None:
            continue
        with pytest.raises(DecryptionError, match="key id 'k1'"):
            codec.decode(event.payload, Place(handle.run_id, event.kind, event.cid))
    with pytest.raises(DecryptionError, match="'k1'"):
        intruder.run(handle.run_id).result(timeout=1)
    assert raw_log(redis_client, key_prefix, handle.run_id) == before
    assert redis_client.xlen(log_key(key_prefix, handle.run_id)) == len(before)


def test_a_payload_copied_from_another_run_does_not_decrypt(make_app: AppFactory) -> None:
    app, durable, pay = shop(make_app, durable_encryption_keys={"k1": new_key()})
    with run_worker(app, concurrency=2):
        first = pay.start("1111", run_id="run-a")
        second = pay.start("2222", run_id="run-b")
        assert first.result(timeout=15) != second.result(timeout=15)

    codec = durable.runtime.codec
    (done_a,) = [e for e in durable.history("run-a") if e.kind == "step_completed"]
    (done_b,) = [e for e in durable.history("run-b") if e.kind == "step_completed"]
    assert done_a.cid == done_b.cid
    assert codec.decode(done_a.payload, Place("run-a", "step_completed", done_a.cid)) == "tok[1111]"
    with pytest.raises(DecryptionError, match="belongs to another run"):
        codec.decode(done_a.payload, Place("run-b", "step_completed", done_b.cid))
    with pytest.raises(DecryptionError):  # nor into another entry of the same run
        codec.decode(done_a.payload, Place("run-a", "run_completed", ""))


def test_a_worker_with_the_wrong_key_changes_nothing_and_a_worker_with_the_right_key_completes(
    make_app: AppFactory, key_prefix: str, redis_client: redis.Redis
) -> None:
    right = {"k1": new_key()}
    starter_app, starter, pay = shop(make_app, durable_encryption_keys=right)
    handle = pay.start("3333")  # no worker yet
    before = raw_log(redis_client, key_prefix, handle.run_id)

    wrong_app, _, _ = shop(make_app, durable_encryption_keys={"k1": new_key()})
    with orchestrator_failures() as failures, run_worker(wrong_app, concurrency=2):
        wait_until(lambda: failures, timeout=15)
    assert isinstance(failures[0], DecryptionError) and "key id 'k1'" in str(failures[0])
    assert handle.status() == "running"
    assert raw_log(redis_client, key_prefix, handle.run_id) == before  # nothing changed

    with run_worker(starter_app, concurrency=2):
        starter.runtime.dispatcher.wake(handle.run_id)  # what the recovery sweep does
        assert handle.result(timeout=15) == {"token": "tok[3333]", "card": "3333"}
