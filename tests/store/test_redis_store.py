"""What only the Redis store has: cluster slots, protocols, script reloading, persistence."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from typing import Any

import fakeredis
import pytest
import redis
from redis.crc import key_slot

from durable_celery.errors import DecodingError
from durable_celery.replay.events import RUN_STARTED, STEP_COMPLETED, STEP_SCHEDULED, NewEvent
from durable_celery.store import MemoryEventStore, RedisEventStore, keys, open_store
from durable_celery.store.base import WaitFor
from durable_celery.store.entries import event_args
from durable_celery.store.redis import LARGE_PAYLOAD_BYTES

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
    last = redis_store.read_last("r1")[-1].entry_id
    # A pass that suspends waiting for s1 and s2 leaves its wait condition (the waitfor hash).
    assert redis_store.finish_pass("r1", "t", last, WaitFor("all", ("s1", "s2"), 2))
    assert redis_store.acquire_lease("r1", "t", 10_000)
    redis_store.append_fenced("r1", "t", [NewEvent(STEP_SCHEDULED, "s2")], outbox=["s2"])
    # A large payload is kept beside the log, in the payloads hash.
    large = b"x" * LARGE_PAYLOAD_BYTES
    redis_store.record_outcome("r1", "s1", NewEvent(STEP_COMPLETED, "s1", {}, large))
    # A step sent before its scheduling is recorded: its outcome waits in the early stream.
    parked = redis_store.record_outcome(
        "r1", "s3", NewEvent(STEP_COMPLETED, "s3"), identity="step:h"
    )
    assert parked.parked
    redis_store.request_wake("r1")
    redis_store.add_timer("timer", "r1", "t1", 60_000, {})
    found = {k.decode() for k in redis_store.client.scan_iter(match=f"{redis_store.prefix}:*")}
    run_keys = set(keys.run_keys(redis_store.prefix, "r1").all())
    global_keys = {keys.runs_index(redis_store.prefix), keys.timers(redis_store.prefix)}
    assert found <= run_keys | global_keys
    assert {k for k in found if "{r1}" in k} == run_keys  # every one of them is live here
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


def wait_until(predicate: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.01)


def run_key_names(store: RedisEventStore, run_id: str = "r1") -> set[str]:
    found = store.client.scan_iter(match=f"{store.prefix}:{{{run_id}}}:*")
    return {k.decode() for k in found}


def test_a_retained_run_leaves_no_key_behind_and_listing_unindexes_it(
    redis_store: RedisEventStore,
) -> None:
    start(redis_store)
    large = b"x" * LARGE_PAYLOAD_BYTES  # kept beside the log, in the payloads hash
    assert redis_store.acquire_lease("r1", "t", 60_000)
    redis_store.append_fenced(
        "r1", "t", [NewEvent(STEP_COMPLETED, "s1", {}, large)], status="completed",
        outbox=["x"], retention_ms=5_000,
    )  # fmt: skip
    k = keys.run_keys(redis_store.prefix, "r1")
    client = redis_store.client
    for key in (k.log, k.meta, k.outcomes, k.outbox, k.wake, k.payloads):
        assert 4_000 < client.pttl(key) <= 5_000, key
    assert 0 < redis_store.lease_ttl_ms("r1") <= 5_000  # cut to the retention, not renewed past
    assert redis_store.finish_pass("r1", "t", redis_store.read_last("r1")[0].entry_id)
    # Keys created after the run finished inherit its deadline: nothing outlives the run.
    assert redis_store.acquire_lease("r1", "t2", 60_000)
    redis_store.append_fenced("r1", "t2", [], outbox=["again"])
    # As if the run had recorded no outcome and no large payload before it finished: a late
    # outcome (or one kept early) creates them again.
    client.delete(k.outcomes, k.payloads)
    early = NewEvent(STEP_COMPLETED, "e1", {}, large)
    assert redis_store.record_outcome("r1", "e1", early, identity="step:h").parked
    assert 0 < client.pttl(k.payloads) <= 5_000
    client.delete(k.payloads)
    redis_store.record_outcome("r1", "late", NewEvent(STEP_COMPLETED, "late", {}, large))
    assert {k.payloads, k.early, k.outcomes} <= run_key_names(redis_store)
    assert all(0 < client.pttl(key) <= 5_000 for key in run_key_names(redis_store))
    for key in run_key_names(redis_store):
        client.pexpire(key, 50)  # skip the wait
    wait_until(lambda: not run_key_names(redis_store), timeout=2.0)
    index = keys.runs_index(redis_store.prefix)
    assert client.zscore(index, "r1") is not None  # the global index is cleaned lazily...
    assert redis_store.list_runs() == []
    assert client.zscore(index, "r1") is None  # ...by the next listing


def test_listing_pages_past_many_vanished_runs(redis_store: RedisEventStore) -> None:
    for i in range(7):
        start(redis_store, f"r{i}")
    for i in (6, 5, 3, 2):  # newest first: r6 and r5 on the first page
        redis_store.client.delete(keys.run_keys(redis_store.prefix, f"r{i}").meta)
    assert [r.run_id for r in redis_store.list_runs(limit=2)] == ["r4", "r1"]
    assert [r.run_id for r in redis_store.list_runs(limit=5)] == ["r4", "r1", "r0"]


def test_a_live_run_has_no_expiry_on_any_key(redis_store: RedisEventStore) -> None:
    start(redis_store)
    assert redis_store.acquire_lease("r1", "t", 60_000)
    redis_store.append_fenced("r1", "t", [NewEvent(STEP_SCHEDULED, "s1")], outbox=["s1"],
                              status="running", retention_ms=50)  # fmt: skip
    redis_store.record_outcome("r1", "s1", NewEvent(STEP_COMPLETED, "s1"))
    k = keys.run_keys(redis_store.prefix, "r1")
    for key in (k.log, k.meta, k.outcomes, k.outbox, k.wake):
        assert redis_store.client.pttl(key) == -1, key


def test_a_buffer_key_lives_as_long_as_its_longest_item(redis_store: RedisEventStore) -> None:
    buffer = keys.event_buffer(redis_store.prefix, "k")
    redis_store.push_buffered_event("k", b"long", 60_000)
    redis_store.push_buffered_event("k", b"short", 50)
    assert redis_store.client.pttl(buffer) > 50_000
    redis_store.push_buffered_event("gone", b"short", 50)
    wait_until(lambda: not redis_store.client.exists(keys.event_buffer(redis_store.prefix, "gone")))


def test_external_event_keys_are_global_and_one_per_operation(
    redis_store: RedisEventStore,
) -> None:
    redis_store.register_hook("order:{7}", "r1")
    redis_store.push_buffered_event("order:{7}", b"x", 60_000)
    redis_store.claim_dedupe("order:{7}", "d1", 60_000)
    found = {k.decode() for k in redis_store.client.scan_iter(match=f"{redis_store.prefix}:*")}
    p = redis_store.prefix
    assert found == {
        f"{p}:hook:order:{{7}}",
        f"{p}:evbuf:order:{{7}}",
        f"{p}:dedupe:9:order:{{7}}:d1",
    }
    assert 0 < redis_store.client.pttl(f"{p}:dedupe:9:order:{{7}}:d1") <= 60_000


@pytest.mark.parametrize("protocol", [2, 3])
def test_script_replies_read_the_same_under_resp2_and_resp3(
    redis_url: str, key_prefix: str, protocol: int
) -> None:
    client = redis.Redis.from_url(redis_url, protocol=protocol)
    try:
        store = RedisEventStore(client, key_prefix)
        start(store)
        assert store.acquire_lease("r1", "t", 10_000)
        event = NewEvent(STEP_COMPLETED, "s1", {"a": [1, b"b"]}, b"\x00v")
        ids, seen = store.append_fenced_and_read("r1", "t", [event], after_id=None)
        assert seen == store.read_since("r1", None) and seen[-1].entry_id == ids[0]
        assert (seen[-1].kind, seen[-1].meta, seen[-1].payload) == (
            STEP_COMPLETED,
            {"a": [1, b"b"]},
            b"\x00v",
        )
        assert store.read_last("r1", 2) == seen
        store.push_buffered_event("k", b"\x00blob", 10_000)
        assert store.claim_buffered_event("k", "o") == b"\x00blob"
        assert store.settle_buffered_event("k", "o")
        assert store.claim_buffered_event("k", "o") is None
        assert store.register_hook("k", "a") is None and store.register_hook("k", "b") == "a"
    finally:
        client.close()


# -- large payloads, kept beside the log ----------------------------------------------------------
def raw_fields(store: RedisEventStore, run_id: str = "r1") -> list[dict[bytes, bytes]]:
    return [f for _, f in store.client.xrange(keys.run_keys(store.prefix, run_id).log)]


def test_large_payloads_are_kept_beside_the_log_and_small_ones_in_it(
    redis_store: RedisEventStore,
) -> None:
    large, small = b"L" * LARGE_PAYLOAD_BYTES, b"s" * (LARGE_PAYLOAD_BYTES - 1)
    assert redis_store.create_run("r1", "wf", NewEvent(RUN_STARTED, "", {}, large), {})
    assert redis_store.acquire_lease("r1", "t", 10_000)
    scheduled = [
        NewEvent(STEP_SCHEDULED, "s1", {}, small),
        NewEvent(STEP_SCHEDULED, "s2", {}, large),
    ]
    redis_store.append_fenced("r1", "t", scheduled)
    redis_store.record_outcome("r1", "s1", NewEvent(STEP_COMPLETED, "s1", {}, large))
    fields = raw_fields(redis_store)
    assert [sorted(f) for f in fields] == [
        [b"b", b"c", b"k", b"m"], [b"c", b"k", b"m", b"p"], [b"b", b"c", b"k", b"m"],
        [b"b", b"c", b"k", b"m"],
    ]  # fmt: skip
    beside = redis_store.client.hgetall(keys.run_keys(redis_store.prefix, "r1").payloads)
    assert sorted(beside) == sorted(f[b"b"] for f in fields if b"b" in f)
    assert set(beside.values()) == {large}
    assert [e.payload for e in redis_store.read_since("r1", None)] == [large, small, large, large]


def test_the_outcome_a_worker_recorded_itself_is_not_read_back(
    redis_store: RedisEventStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    start(redis_store)
    large = b"L" * LARGE_PAYLOAD_BYTES
    redis_store.record_outcome("r1", "s1", NewEvent(STEP_COMPLETED, "s1", {}, large))
    after = redis_store.read_last("r1")[0].entry_id
    assert redis_store.acquire_lease("r1", "t0", 10_000)
    assert redis_store.finish_pass("r1", "t0", after)  # the run sleeps until an outcome wakes it
    fetched: list[Any] = []
    hmget = redis_store.client.hmget
    monkeypatch.setattr(redis_store.client, "hmget", lambda *a: fetched.append(a) or hmget(*a))
    outcome, begun = redis_store.record_and_begin(
        "r1", "s2", NewEvent(STEP_COMPLETED, "s2", {}, large + b"2"), "t", 10_000, None
    )
    assert outcome.created and begun is not None and begun.acquired
    assert [e.payload for e in begun.entries] == [b"in", large, large + b"2"]
    assert len(fetched) == 1 and len(fetched[0][1]) == 1  # only s1's, written by another
    assert redis_store.read_since("r1", after)[0].payload == large + b"2"


def test_an_append_told_the_log_length_it_read_skips_reading_the_log(
    redis_store: RedisEventStore,
) -> None:
    """``known`` is trusted: when the log holds that many entries, the script does not read it
    (an XLEN, where an empty XRANGE costs Redis several times more). Shown with a count that
    lies: it hides an entry the true count returns."""
    start(redis_store)
    assert redis_store.acquire_lease("r1", "t", 10_000)
    first = redis_store.read_since("r1", None)[0].entry_id
    redis_store.record_outcome("r1", "s1", NewEvent(STEP_COMPLETED, "s1"))
    _, seen = redis_store.append_fenced_and_read(
        "r1", "t", [NewEvent(STEP_SCHEDULED, "s2")], after_id=first, known=1
    )
    assert [e.cid for e in seen] == ["s1", "s2"]  # the true count: read
    _, seen = redis_store.append_fenced_and_read(
        "r1", "t", [NewEvent(STEP_SCHEDULED, "s3")], after_id=first, known=3
    )
    assert [e.cid for e in seen] == ["s3"]  # 3 entries, as told: s1 and s2 not read again
    _, seen = redis_store.append_fenced_and_read(
        "r1", "t", [NewEvent(STEP_SCHEDULED, "s4")], after_id=first, known=None
    )
    assert [e.cid for e in seen] == ["s1", "s2", "s3", "s4"]  # not told: read


def test_a_script_refuses_a_payload_reference_that_is_not_there(
    redis_store: RedisEventStore,
) -> None:
    start(redis_store)
    k = keys.run_keys(redis_store.prefix, "r1")
    before = raw_fields(redis_store)
    event = NewEvent(STEP_COMPLETED, "s1", {}, b"never written")
    with pytest.raises(redis.ResponseError, match="payload nope is not in"):
        redis_store._scripts.record_outcome(
            keys=[k.meta, k.outcomes, k.log, k.wake, k.waitfor, k.early, k.payloads],
            args=["s1", "1", *event_args(event, "nope"), "0", ""],
        )
    assert redis_store.acquire_lease("r1", "t", 10_000)
    with pytest.raises(redis.ResponseError, match="payload nope is not in"):
        redis_store._scripts.append_fenced(
            keys=[k.lease, k.log, k.meta, k.outcomes, k.outbox, k.wake, k.waitfor, k.early,
                  k.payloads],
            args=["t", "", 1, "", "", "", 0, "", 0, *event_args(event, "nope"), "s1", ""],
        )  # fmt: skip
    assert raw_fields(redis_store) == before
    assert redis_store.outcome_id("r1", "s1") is None


def test_a_payload_missing_from_beside_the_log_is_a_clear_decoding_error(
    redis_store: RedisEventStore,
) -> None:
    start(redis_store)
    large = b"L" * LARGE_PAYLOAD_BYTES
    redis_store.record_outcome("r1", "s1", NewEvent(STEP_COMPLETED, "s1", {}, large))
    redis_store.client.delete(keys.run_keys(redis_store.prefix, "r1").payloads)
    with pytest.raises(
        DecodingError, match=r"payload of entry .* \(step_completed 's1'\) is missing"
    ):
        redis_store.read_since("r1", None)


def test_the_outcomes_hash_is_a_hash_table_from_the_start(
    redis_client: redis.Redis, key_prefix: str
) -> None:
    """Lookups in a listpack-encoded hash scan it whole, and grow with the run: create_run
    makes the outcomes hash a hash table, which an inline step's append keeps small."""
    store = RedisEventStore(redis_client, prefix=key_prefix)
    start(store)
    outcomes = keys.run_keys(key_prefix, "r1").outcomes
    assert redis_client.object("encoding", outcomes) == b"hashtable"
    assert store.acquire_lease("r1", "t", 10_000)
    for n in range(1, 4):
        cid = f"s{n}"
        scheduled = NewEvent(STEP_SCHEDULED, cid, {"name": "f", "h": "x"}, b"in")
        store.append_fenced("r1", "t", [scheduled, NewEvent(STEP_COMPLETED, cid, {}, b"out")])
    assert redis_client.object("encoding", outcomes) == b"hashtable"
    assert sorted(redis_client.hkeys(outcomes)) == [b"#table", b"s1", b"s2", b"s3"]
