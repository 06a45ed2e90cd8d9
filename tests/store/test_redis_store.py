"""What only the Redis store has: cluster slots, protocols, script reloading, persistence."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from typing import Any

import fakeredis
import pytest
import redis
from redis.crc import key_slot

from durable_celery.replay.events import RUN_STARTED, STEP_COMPLETED, STEP_SCHEDULED, NewEvent
from durable_celery.store import MemoryEventStore, RedisEventStore, keys, open_store

pytestmark = pytest.mark.timeout(60)


@pytest.fixture(params=["fakeredis", "redis"])
def redis_store(request: pytest.FixtureRequest) -> Iterator[RedisEventStore]:
    if request.param == "fakeredis":
        client = fakeredis.FakeRedis(server=fakeredis.FakeServer())
        yield RedisEventStore(client, prefix="t")
        client.close()
    else:
        client = request.getfixturevalue("redis_client")
        yield RedisEventStore(client, prefix=request.getfixturevalue("key_prefix"))


def start(store: RedisEventStore, run_id: str = "r1") -> None:
    assert store.create_run(run_id, "wf", NewEvent(RUN_STARTED, "", {}, b"in"), {"q": "x"})


def test_every_key_a_run_touches_is_in_its_slot_and_globals_are_outside(
    redis_store: RedisEventStore,
) -> None:
    start(redis_store)
    assert redis_store.acquire_lease("r1", "t", 10_000)
    redis_store.append_fenced("r1", "t", [NewEvent(STEP_SCHEDULED, "s1")], outbox=["s1"])
    redis_store.record_outcome("r1", "s1", NewEvent(STEP_COMPLETED, "s1"))
    redis_store.add_timer("timer", "r1", "t1", 60_000, {})
    found = {k.decode() for k in redis_store.client.scan_iter(match=f"{redis_store.prefix}:*")}
    run_keys = set(keys.run_keys(redis_store.prefix, "r1").all())
    global_keys = {keys.runs_index(redis_store.prefix), keys.timers(redis_store.prefix)}
    assert found <= run_keys | global_keys
    assert {k for k in found if "{r1}" in k} == run_keys  # lease, wake flag, outbox are live
    assert {key_slot(k.encode()) for k in run_keys} == {key_slot(b"r1")}


def test_the_store_refuses_a_client_that_decodes_responses() -> None:
    client = fakeredis.FakeRedis(server=fakeredis.FakeServer(), decode_responses=True)
    with pytest.raises(ValueError, match="decode_responses=False"):
        RedisEventStore(client)
    client.close()


def test_a_resp2_client_reads_and_blocks_like_a_resp3_one(redis_url: str, key_prefix: str) -> None:
    client = redis.Redis.from_url(redis_url, protocol=2)
    try:
        store = RedisEventStore(client, key_prefix)
        start(store)
        tail = store.read_since("r1", None)[-1].entry_id
        assert store.read_blocking("r1", tail, 20) == []
        store.record_outcome("r1", "s1", NewEvent(STEP_COMPLETED, "s1", {"a": 1}, b"v"))
        (event,) = store.read_blocking("r1", tail, 1_000)
        assert (event.kind, event.cid, event.meta, event.payload) == (
            STEP_COMPLETED,
            "s1",
            {"a": 1},
            b"v",
        )
    finally:
        client.close()


def test_scripts_are_loaded_again_when_the_server_forgot_them(
    redis_server_factory: Callable[..., Any],
) -> None:
    server = redis_server_factory()
    client = server.client()
    try:
        store = RedisEventStore(client, "p")
        start(store)
        client.script_flush()
        assert store.acquire_lease("r1", "t", 10_000)
        assert len(store.append_fenced("r1", "t", [NewEvent(STEP_SCHEDULED, "s1")])) == 1
    finally:
        client.close()


def test_a_run_survives_a_redis_crash_with_aof_and_stays_append_once(
    redis_server_factory: Callable[..., Any],
) -> None:
    server = redis_server_factory("--appendonly", "yes", "--appendfsync", "always")
    client = server.client()
    try:
        store = RedisEventStore(client, "p")
        start(store)
        first = store.record_outcome("r1", "s1", NewEvent(STEP_COMPLETED, "s1", {}, b"x"))
        before = store.read_since("r1", None)
        server.restart(crash=True)
        assert store.read_since("r1", None) == before
        again = store.record_outcome("r1", "s1", NewEvent(STEP_COMPLETED, "s1", {}, b"y"))
        assert not again.created and again.entry_id == first.entry_id
        assert store.wake_pending("r1")
    finally:
        client.close()


def test_listing_skips_runs_whose_record_is_gone_and_create_repairs_the_index(
    redis_store: RedisEventStore,
) -> None:
    for run_id in ("a", "b"):
        start(redis_store, run_id)
    client = redis_store.client
    client.delete(keys.run_keys(redis_store.prefix, "a").meta)
    assert [r.run_id for r in redis_store.list_runs()] == ["b"]
    client.zrem(keys.runs_index(redis_store.prefix), "b")
    assert redis_store.list_runs() == []
    assert not redis_store.create_run("b", "wf", NewEvent(RUN_STARTED), {})
    assert [r.run_id for r in redis_store.list_runs()] == ["b"]


def test_a_malformed_timer_is_dropped_with_a_warning(
    redis_store: RedisEventStore, caplog: pytest.LogCaptureFixture
) -> None:
    redis_store.client.zadd(keys.timers(redis_store.prefix), {b"not json": 0})
    redis_store.add_timer("timer", "r1", "t1", 0, {})
    with caplog.at_level(logging.WARNING, logger="durable_celery.store"):
        assert [t.cid for t in redis_store.claim_due_timers(10_000)] == ["t1"]
    assert "malformed durable timer" in caplog.text
    assert redis_store.client.zscore(keys.timers(redis_store.prefix), b"not json") is None


def test_open_store_picks_the_store_from_the_url(redis_url: str, key_prefix: str) -> None:
    assert isinstance(open_store("memory://", "p"), MemoryEventStore)
    store = open_store(redis_url, key_prefix)
    try:
        assert isinstance(store, RedisEventStore) and store.prefix == key_prefix
        start(store)
        assert store.get_run("r1") is not None
    finally:
        assert isinstance(store, RedisEventStore)
        store.client.close()
    with pytest.raises(ValueError, match="unsupported event store URL"):
        open_store("postgres://localhost/db", "p")
