"""The event store contract, part 3: external events (hooks, the event buffer, dedupe ids).

Global keys, not per run: a hook says which run waits on an event key, the buffer keeps what was
sent before anyone waited, dedupe ids drop resent events. Runs on every store kind.
"""

from __future__ import annotations

import threading
import time

import fakeredis
import pytest

from durable_celery.store import EventStore, RedisEventStore

pytestmark = pytest.mark.timeout(60)

ODD_KEYS = ["order:42", "a{b}c", "é/ü ∑", "k" * 1000]


def on_fakeredis(store: EventStore) -> bool:
    return isinstance(store, RedisEventStore) and isinstance(store.client, fakeredis.FakeRedis)


def take(store: EventStore, key: str, owner: str = "run-w\ne1") -> bytes | None:
    """What a waiter does with a buffered event: claim it, record it, settle it."""
    blob = store.claim_buffered_event(key, owner)
    if blob is not None:
        assert store.settle_buffered_event(key, owner)
    return blob


# -- hooks ----------------------------------------------------------------------------------------
def test_a_hook_is_claimed_once_and_a_second_claimant_learns_the_owner(store: EventStore) -> None:
    assert store.get_hook("order:1") is None
    assert store.register_hook("order:1", "run-a") is None
    assert store.register_hook("order:1", "run-a") is None  # already ours: fine
    assert store.register_hook("order:1", "run-b") == "run-a"
    assert store.get_hook("order:1") == "run-a"
    assert store.get_hook("order:2") is None


def test_replace_hook_is_a_compare_and_set(store: EventStore) -> None:
    assert not store.replace_hook("k", "run-a", "run-b")  # free: nothing to replace
    assert store.get_hook("k") is None
    assert store.register_hook("k", "run-a") is None
    assert not store.replace_hook("k", "run-x", "run-b")
    assert store.get_hook("k") == "run-a"
    assert store.replace_hook("k", "run-a", "run-b")
    assert store.get_hook("k") == "run-b"
    assert store.register_hook("k", "run-a") == "run-b"


def test_delete_hook_removes_it_only_for_its_owner(store: EventStore) -> None:
    assert not store.delete_hook("k", "run-a")
    assert store.register_hook("k", "run-a") is None
    assert not store.delete_hook("k", "run-b")
    assert store.get_hook("k") == "run-a"
    assert store.delete_hook("k", "run-a")
    assert store.get_hook("k") is None
    assert store.register_hook("k", "run-b") is None


@pytest.mark.parametrize("key", ODD_KEYS)
def test_any_event_key_up_to_1000_characters_works(store: EventStore, key: str) -> None:
    assert store.register_hook(key, "run-a") is None
    assert store.get_hook(key) == "run-a"
    store.push_buffered_event(key, b"x", 10_000)
    assert take(store, key) == b"x"
    assert store.claim_dedupe(key, "d1", 10_000)
    assert not store.claim_dedupe(key, "d1", 10_000)


@pytest.mark.parametrize(("key", "why"), [("", "non-empty"), ("k" * 1001, "at most 1000")])
def test_bad_event_keys_are_refused_with_a_message_saying_why(
    store: EventStore, key: str, why: str
) -> None:
    with pytest.raises(ValueError, match=why):
        store.register_hook(key, "run-a")
    with pytest.raises(ValueError, match=why):
        store.get_hook(key)
    with pytest.raises(ValueError, match=why):
        store.push_buffered_event(key, b"x", 1_000)
    with pytest.raises(ValueError, match=why):
        take(store, key)
    with pytest.raises(ValueError, match=why):
        store.claim_dedupe(key, "d1", 1_000)


def test_owners_ttls_and_dedupe_ids_are_checked(store: EventStore) -> None:
    with pytest.raises(ValueError, match="owner"):
        store.register_hook("k", "")
    with pytest.raises(ValueError, match="owner"):
        store.replace_hook("k", "run-a", "")
    with pytest.raises(ValueError, match="ttl"):
        store.push_buffered_event("k", b"x", 0)
    with pytest.raises(ValueError, match="ttl"):
        store.claim_dedupe("k", "d1", -5)
    with pytest.raises(ValueError, match="dedupe id"):
        store.claim_dedupe("k", "", 1_000)
    assert store.get_hook("k") is None
    assert take(store, "k") is None


# -- the event buffer -----------------------------------------------------------------------------
def test_buffered_events_come_back_oldest_first_and_once(store: EventStore) -> None:
    payloads = [b"first", b"", b"\x00:\xff binary", b"last"]
    for blob in payloads:
        store.push_buffered_event("k", blob, 10_000)
    store.push_buffered_event("other", b"elsewhere", 10_000)
    assert [take(store, "k") for _ in payloads] == payloads
    assert take(store, "k") is None
    assert take(store, "other") == b"elsewhere"
    assert take(store, "never-pushed") is None


def test_an_expired_buffered_event_is_never_returned(store: EventStore) -> None:
    store.push_buffered_event("k", b"short", 50)
    store.push_buffered_event("k", b"long", 10_000)
    store.push_buffered_event("k", b"short-again", 50)
    store.push_buffered_event("gone", b"short", 50)
    time.sleep(0.12)
    assert take(store, "k") == b"long"
    assert take(store, "k") is None
    assert take(store, "gone") is None


def test_racing_waiters_never_claim_the_same_buffered_event(store: EventStore) -> None:
    if on_fakeredis(store):
        pytest.skip("fakeredis runs every command in-process under one lock: nothing races")
    sent = [f"e{i}".encode() for i in range(400)]
    for blob in sent:
        store.push_buffered_event("k", blob, 60_000)
    barrier = threading.Barrier(8)
    popped: list[list[bytes]] = [[] for _ in range(8)]

    def drain(mine: list[bytes]) -> None:
        owner = f"run-{threading.get_ident()}\ne1"
        barrier.wait()
        while (blob := take(store, "k", owner)) is not None:
            mine.append(blob)

    threads = [threading.Thread(target=drain, args=(mine,)) for mine in popped]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    everything = [blob for mine in popped for blob in mine]
    assert len(everything) == len(set(everything)) == len(sent)
    assert set(everything) == set(sent)
    for mine in popped:  # each waiter still sees FIFO order
        assert mine == sorted(mine, key=sent.index)


def test_a_claimed_event_comes_back_to_its_owner_only_until_settled(store: EventStore) -> None:
    store.push_buffered_event("k", b"first", 10_000)
    store.push_buffered_event("k", b"second", 10_000)
    assert store.claim_buffered_event("k", "run-a\ne1") == b"first"
    # Its pass died before recording it: asked again, the same waiter gets the same event.
    assert store.claim_buffered_event("k", "run-a\ne1") == b"first"
    # Another waiter never gets a claimed event: it gets the next one.
    assert store.claim_buffered_event("k", "run-b\ne1") == b"second"
    assert store.claim_buffered_event("k", "run-c\ne1") is None
    assert store.settle_buffered_event("k", "run-a\ne1")
    assert not store.settle_buffered_event("k", "run-a\ne1")
    assert store.claim_buffered_event("k", "run-a\ne1") is None  # settled: gone
    assert store.claim_buffered_event("k", "run-b\ne1") == b"second"
    assert store.settle_buffered_event("k", "run-b\ne1")
    assert store.claim_buffered_event("k", "run-c\ne1") is None


def test_a_claimed_event_expires_with_its_ttl(store: EventStore) -> None:
    store.push_buffered_event("k", b"short", 50)
    store.push_buffered_event("k", b"long", 10_000)
    assert store.claim_buffered_event("k", "run-a\ne1") == b"short"
    time.sleep(0.12)
    assert store.claim_buffered_event("k", "run-a\ne1") == b"long"  # its claim expired
    assert not store.settle_buffered_event("k", "run-b\ne1")
    assert store.settle_buffered_event("k", "run-a\ne1")
    assert store.claim_buffered_event("k", "run-a\ne1") is None


def test_owners_that_share_a_prefix_or_hold_odd_bytes_settle_only_their_own(
    store: EventStore,
) -> None:
    for blob in (b"a", b"b", b"c"):
        store.push_buffered_event("k", blob, 10_000)
    owners = ["run-1\ne1", "run-1\ne10", "run:1\n:e1c"]
    assert [store.claim_buffered_event("k", o) for o in owners] == [b"a", b"b", b"c"]
    assert store.settle_buffered_event("k", owners[1])
    assert [store.claim_buffered_event("k", o) for o in owners] == [b"a", None, b"c"]
    assert store.settle_buffered_event("k", owners[2])
    assert store.settle_buffered_event("k", owners[0])
    assert store.claim_buffered_event("k", owners[0]) is None


# -- dedupe ---------------------------------------------------------------------------------------
def test_a_dedupe_id_is_claimed_once_until_released(store: EventStore) -> None:
    assert store.claim_dedupe("k", "d1", 10_000)
    assert not store.claim_dedupe("k", "d1", 10_000)
    assert store.claim_dedupe("k", "d2", 10_000)
    assert store.claim_dedupe("other", "d1", 10_000)
    store.release_dedupe("k", "d1")
    assert store.claim_dedupe("k", "d1", 10_000)
    store.release_dedupe("k", "never-claimed")  # nothing to forget: no error


def test_dedupe_ids_of_different_keys_never_collide(store: EventStore) -> None:
    assert store.claim_dedupe("a:b", "c", 10_000)
    assert store.claim_dedupe("a", "b:c", 10_000)
    assert not store.claim_dedupe("a:b", "c", 10_000)


def test_a_dedupe_id_is_forgotten_after_its_ttl(store: EventStore) -> None:
    assert store.claim_dedupe("k", "d1", 200)
    assert not store.claim_dedupe("k", "d1", 200)
    time.sleep(0.3)
    assert store.claim_dedupe("k", "d1", 10_000)
    assert not store.claim_dedupe("k", "d1", 10_000)
