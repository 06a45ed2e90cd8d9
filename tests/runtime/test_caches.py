"""Per-process caches (DESIGN.md section 5): decode once, leak no mutation, read only deltas."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, datetime, time, timedelta, timezone
from decimal import Decimal
from typing import Any
from uuid import UUID

import pytest

from durable_celery import Durable
from durable_celery.codec import Codec, Place
from durable_celery.replay import events as ev
from durable_celery.replay.events import Event, NewEvent
from durable_celery.runtime.caches import EventCache, HydrationCache, is_immutable
from durable_celery.store import MemoryEventStore
from durable_celery.testing.local import LocalEnvironment


class CountingDecode:
    """Wraps a codec's decode; counts decodes of step results."""

    def __init__(self, codec: Codec) -> None:
        self.inner = codec.decode
        self.step_results = 0

    def __call__(self, blob: bytes, place: Place) -> Any:
        if place.kind == ev.STEP_COMPLETED:
            self.step_results += 1
        return self.inner(blob, place)


def replaying_env(durable: Durable, **settings: Any) -> LocalEnvironment:
    """Dispatch, no live executions: every step completion is a full replay from the top."""
    return LocalEnvironment(durable, step_execution="dispatch", live_workflows=False, **settings)


# -- is_immutable --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    [
        None,
        True,
        0,
        -(2**70),
        1.5,
        2j,
        "text",
        b"bytes",
        Decimal("1.10"),
        date(2024, 1, 2),
        datetime(2024, 1, 2, 3, 4, tzinfo=timezone.utc),
        time(1, 2),
        timedelta(seconds=3),
        UUID(int=5),
        (),
        (1, "a", (b"x", None)),
        frozenset({1, 2}),
        frozenset({(1, 2)}),
    ],
    ids=repr,
)
def test_values_no_replay_can_mutate_count_as_immutable(value: Any) -> None:
    assert is_immutable(value)


@pytest.mark.parametrize(
    "value",
    [
        [],
        {},
        {"a": 1},
        [1, 2],
        {1, 2},
        bytearray(b"x"),
        (1, [2]),
        ([],),
        (1, {"a": 1}),
        object(),
        Exception("x"),
    ],
    ids=repr,
)
def test_containers_that_can_change_are_not_immutable(value: Any) -> None:
    assert not is_immutable(value)


# -- HydrationCache, alone ------------------------------------------------------------------------


def decoder(value: Any) -> tuple[Callable[[], Any], list[int]]:
    calls: list[int] = []

    def decode() -> Any:
        calls.append(1)
        return value

    return decode, calls


def test_an_immutable_value_is_decoded_once_then_served_from_the_cache() -> None:
    cache = HydrationCache(max_bytes=10_000, max_item_bytes=1000)
    decode, calls = decoder(("a", 1))
    assert [cache.get_or_decode("r", "1-0", decode) for _ in range(5)] == [("a", 1)] * 5
    assert len(calls) == 1
    assert (cache.hits, cache.misses) == (4, 1)


def test_a_mutable_value_is_decoded_again_on_every_read() -> None:
    cache = HydrationCache(max_bytes=10_000, max_item_bytes=1000)
    calls: list[int] = []

    def decode() -> dict[str, int]:
        calls.append(1)
        return {"n": 1}

    first = cache.get_or_decode("r", "1-0", decode)
    first["n"] = 99
    assert cache.get_or_decode("r", "1-0", decode) == {"n": 1}
    assert len(calls) == 2
    assert len(cache) == 0


def test_an_error_while_decoding_is_never_cached() -> None:
    cache = HydrationCache(max_bytes=10_000, max_item_bytes=1000)
    calls: list[int] = []

    def decode() -> Any:
        calls.append(1)
        raise ValueError("corrupt")

    for _ in range(2):
        with pytest.raises(ValueError, match="corrupt"):
            cache.get_or_decode("r", "1-0", decode)
    assert len(calls) == 2
    assert len(cache) == 0


def test_a_value_over_the_item_limit_is_not_cached() -> None:
    cache = HydrationCache(max_bytes=100_000, max_item_bytes=100)
    big, calls = decoder("x" * 101)
    small, small_calls = decoder("x" * 100)
    for _ in range(3):
        cache.get_or_decode("r", "1-0", big)
        cache.get_or_decode("r", "1-1", small)
    assert (len(calls), len(small_calls)) == (3, 1)


def cached(cache: HydrationCache, run_id: str, entry_id: str) -> bool:
    """Whether the cache answers without decoding (asking with a mutable value stores nothing)."""
    sentinel: list[str] = []
    return cache.get_or_decode(run_id, entry_id, lambda: sentinel) is not sentinel


def test_the_cache_stays_within_its_byte_bound_evicting_the_oldest_entries() -> None:
    cache = HydrationCache(max_bytes=400, max_item_bytes=200)
    for i in range(6):
        cache.get_or_decode("r", f"1-{i}", decoder(chr(ord("a") + i) * 100)[0])
        assert cache.size_bytes <= 400
    assert len(cache) == 2  # 100 bytes + 64 of overhead each: two fit in 400
    assert [cached(cache, "r", f"1-{i}") for i in range(6)] == [False] * 4 + [True] * 2


def test_touching_an_entry_saves_it_from_eviction() -> None:
    cache = HydrationCache(max_bytes=3 * (100 + 64), max_item_bytes=200)
    for i in range(3):
        cache.get_or_decode("r", f"1-{i}", decoder(str(i) * 100)[0])
    cache.get_or_decode("r", "1-0", decoder("refetched")[0])  # a hit: 1-0 becomes most recent
    cache.get_or_decode("r", "1-3", decoder("3" * 100)[0])  # evicts the least recent: 1-1

    missing, calls = decoder("decoded again")
    assert cache.get_or_decode("r", "1-0", missing) == "0" * 100
    assert cache.get_or_decode("r", "1-2", missing) == "2" * 100
    assert cache.get_or_decode("r", "1-1", missing) == "decoded again"
    assert len(calls) == 1


def test_dropping_a_run_frees_only_that_runs_entries() -> None:
    cache = HydrationCache(max_bytes=10_000, max_item_bytes=1000)
    cache.get_or_decode("a", "1-0", decoder(1)[0])
    cache.get_or_decode("a", "1-1", decoder(2)[0])
    cache.get_or_decode("b", "1-0", decoder(3)[0])
    before = cache.size_bytes
    cache.drop_run("a")
    assert len(cache) == 1
    assert 0 < cache.size_bytes < before
    assert cache.get_or_decode("b", "1-0", decoder("x")[0]) == 3


# -- hydration inside real runs ------------------------------------------------------------------


def test_an_immutable_step_result_is_decoded_once_across_many_replays(durable: Durable) -> None:
    @durable.step
    def compute(i: int) -> tuple[int, str]:
        return i, str(i)

    @durable.workflow
    def wf(n: int) -> list[tuple[int, str]]:
        return [compute(i) for i in range(n)]

    env = replaying_env(durable)
    counting = CountingDecode(env.runtime.codec)
    env.runtime.codec.decode = counting  # type: ignore[method-assign]
    handle = wf.start(10)

    assert env.result(handle) == [(i, str(i)) for i in range(10)]
    assert env.passes == 11  # each replays every earlier result: 45 reads without the cache
    assert counting.step_results == 10
    assert env.runtime.hydration.hits == 45


def test_a_mutable_step_result_mutated_in_one_replay_is_fresh_in_the_next(
    durable: Durable,
) -> None:
    seen: list[dict[str, Any]] = []

    @durable.step
    def load() -> dict[str, Any]:
        return {"count": 1, "tags": ["a"]}

    @durable.step
    def tick(i: int) -> int:
        return i

    @durable.workflow
    def wf(n: int) -> int:
        config = load()
        seen.append({"count": config["count"], "tags": list(config["tags"])})
        config["count"] += 100  # mutating a recorded result must not leak into later replays
        config["tags"].append("mutated")
        for i in range(n):
            tick(i)
        return int(config["count"])

    env = replaying_env(durable)
    assert env.result(wf.start(3)) == 101
    assert len(seen) == 4
    assert all(s == {"count": 1, "tags": ["a"]} for s in seen)


def test_a_runs_cache_entries_are_dropped_when_it_finishes(durable: Durable) -> None:
    @durable.step
    def value(i: int) -> int:
        return i

    @durable.workflow
    def wf() -> int:
        return value(1) + value(2)

    env = replaying_env(durable)
    handle = wf.start()
    env.step_once()  # schedule s1
    env.step_once()  # run it
    env.step_once()  # replay: s1 is decoded (and cached), s2 is scheduled
    assert len(env.runtime.hydration) == 1
    assert handle.run_id in env.runtime.events

    assert env.result(handle) == 3
    assert len(env.runtime.hydration) == 0
    assert env.runtime.hydration.size_bytes == 0
    assert handle.run_id not in env.runtime.events


def test_a_large_step_result_is_not_kept_in_the_cache(durable: Durable) -> None:
    @durable.step
    def big() -> str:
        return "x" * 5000

    @durable.step
    def tick(i: int) -> int:
        return i

    @durable.workflow
    def wf() -> int:
        text = big()
        return len(text) + tick(1) + tick(2)

    env = replaying_env(durable, hydration_max_item_bytes=4096)
    counting = CountingDecode(env.runtime.codec)
    env.runtime.codec.decode = counting  # type: ignore[method-assign]
    assert env.result(wf.start()) == 5003
    # big's result is decoded on each of the 3 passes after it; tick(1)'s once, tick(2)'s once.
    assert counting.step_results == 3 + 1 + 1


# -- EventCache ----------------------------------------------------------------------------------


class RecordingReads:
    """Wraps a store's ``read_since``; records (run id, after id, entries returned)."""

    def __init__(self, read_since: Callable[[str, str | None], list[Event]]) -> None:
        self.read_since = read_since
        self.calls: list[tuple[str, str | None, int]] = []

    def __call__(self, run_id: str, after_id: str | None) -> list[Event]:
        events = self.read_since(run_id, after_id)
        self.calls.append((run_id, after_id, len(events)))
        return events


def started(workflow: str = "wf") -> NewEvent:
    return NewEvent(ev.RUN_STARTED, "", {"workflow": workflow})


def test_the_event_cache_reads_only_entries_after_the_last_one_it_holds() -> None:
    store = MemoryEventStore()
    store.create_run("r", "wf", started(), {})
    reads = RecordingReads(store.read_since)
    cache = EventCache(reads, max_runs=10)

    history, new = cache.refresh("r")
    assert len(history) == len(new) == 1
    store.record_outcome("r", "k1", NewEvent(ev.MARKER, "m1"), wake=False)
    store.record_outcome("r", "k2", NewEvent(ev.MARKER, "m2"), wake=False)
    history, new = cache.refresh("r")
    assert [e.cid for e in new] == ["m1", "m2"]
    assert [e.cid for e in history] == ["", "m1", "m2"]
    history, new = cache.refresh("r")
    assert new == [] and len(history) == 3

    ids = [e.entry_id for e in history]
    assert reads.calls == [("r", None, 1), ("r", ids[0], 2), ("r", ids[2], 0)]


def test_the_event_cache_tells_its_last_id_and_how_many_entries_it_holds() -> None:
    store = MemoryEventStore()
    store.create_run("r", "wf", started(), {})
    cache = EventCache(store.read_since, max_runs=10)
    assert cache.tail("r") == (None, None)
    cache.refresh("r")
    store.record_outcome("r", "k1", NewEvent(ev.MARKER, "m1"), wake=False)
    history, _ = cache.refresh("r")
    assert cache.tail("r") == (history[-1].entry_id, 2)
    assert cache.tail("r") == (cache.last_id("r"), len(store.read_since("r", None)))


def test_the_event_cache_keeps_a_bounded_number_of_runs() -> None:
    store = MemoryEventStore()
    for run_id in ("a", "b", "c"):
        store.create_run(run_id, "wf", started(), {})
    cache = EventCache(store.read_since, max_runs=2)
    cache.refresh("a")
    cache.refresh("b")
    cache.refresh("a")  # a is now the most recent
    cache.refresh("c")
    assert ("a" in cache, "b" in cache, "c" in cache) == (True, False, True)
    assert len(cache) == 2


def test_a_run_reads_each_log_entry_once_over_all_its_passes(durable: Durable) -> None:
    @durable.step
    def inc(x: int) -> int:
        return x + 1

    @durable.workflow
    def wf(n: int) -> int:
        x = 0
        for _ in range(n):
            x = inc(x)
        return x

    store = MemoryEventStore()
    received: list[tuple[str, str | None, list[str]]] = []  # (run, after id, entry ids got)
    read_since, append_and_read = store.read_since, store.append_fenced_and_read

    def recording_read(run_id: str, after_id: str | None) -> list[Event]:
        events = read_since(run_id, after_id)
        received.append((run_id, after_id, [e.entry_id for e in events]))
        return events

    def recording_append(run_id: str, token: str, events: Any, **kw: Any) -> Any:
        ids, new = append_and_read(run_id, token, events, **kw)
        received.append((run_id, kw["after_id"], [e.entry_id for e in new]))
        return ids, new

    append_and_finish = store.append_and_finish

    def recording_finish(run_id: str, token: str, events: Any, **kw: Any) -> Any:
        ids, new, finished = append_and_finish(run_id, token, events, **kw)
        received.append((run_id, kw["after_id"], [e.entry_id for e in new]))
        return ids, new, finished

    store.read_since = recording_read  # type: ignore[method-assign]
    store.append_fenced_and_read = recording_append  # type: ignore[method-assign]
    store.append_and_finish = recording_finish  # type: ignore[method-assign]
    env = LocalEnvironment(durable, store=store, step_execution="dispatch", live_workflows=False)
    handle = wf.start(5)
    env.run_until_idle()
    assert env.passes == 6

    mine = [(after, got) for run_id, after, got in received if run_id == handle.run_id]
    assert [after for after, _ in mine].count(None) == 1  # the whole log is read only once
    got = [entry_id for _, ids in mine for entry_id in ids]
    assert len(got) == len(set(got))  # no entry fetched twice
    log = [e.entry_id for e in read_since(handle.run_id, None)]
    assert set(log) - set(got) <= {log[-1]}  # all of it, except perhaps the final entry
