"""Script calls on per-thread pinned connections: same replies as redis-py's path, and the
connection handling around them (NOSCRIPT, lost connections, retries, threads, fork, close)."""

from __future__ import annotations

import os
import re
import threading
import time
import traceback
import uuid
import warnings
from collections.abc import Callable, Iterator
from typing import Any

import fakeredis
import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from durable_celery.errors import RunNotFound
from durable_celery.replay.events import RUN_STARTED, STEP_COMPLETED, STEP_SCHEDULED, NewEvent
from durable_celery.store import RedisEventStore, keys
from durable_celery.store import scripts as scripts_module
from durable_celery.store.redis import LARGE_PAYLOAD_BYTES
from durable_celery.store.scripts import LuaScript, Scripts

pytestmark = pytest.mark.timeout(60)

SCRIPT_COMMANDS = ("EVALSHA", "EVAL", "SCRIPT LOAD")


class CommandCounter:
    """Counts the script commands a client sends through its regular ``execute_command``."""

    def __init__(self, client: redis.Redis) -> None:
        self.names: list[str] = []
        self._inner = client.execute_command

    def __call__(self, *args: Any, **options: Any) -> Any:
        self.names.append(str(args[0]).upper())
        return self._inner(*args, **options)

    @property
    def script_calls(self) -> int:
        return sum(name in SCRIPT_COMMANDS for name in self.names)


@pytest.fixture
def client_name() -> str:
    return "fastlane-" + uuid.uuid4().hex[:8]


@pytest.fixture
def make_client(redis_url: str, client_name: str) -> Iterator[Callable[..., redis.Redis]]:
    """Plain clients named ``client_name`` (to find their connections in CLIENT LIST)."""
    made: list[redis.Redis] = []

    def make(**kwargs: Any) -> redis.Redis:
        kwargs.setdefault("client_name", client_name)
        client = redis.Redis.from_url(redis_url, decode_responses=False, **kwargs)
        made.append(client)
        return client

    yield make
    for client in made:
        client.close()


def counted(client: redis.Redis, monkeypatch: pytest.MonkeyPatch) -> CommandCounter:
    counter = CommandCounter(client)
    monkeypatch.setattr(client, "execute_command", counter)
    return counter


def in_use(client: redis.Redis) -> set[Any]:
    return set(client.connection_pool._in_use_connections)  # type: ignore[attr-defined]


def server_ids(admin: redis.Redis, name: str) -> set[int]:
    return {int(c["id"]) for c in admin.client_list() if c.get("name") == name}


def start(store: RedisEventStore, run_id: str = "r1") -> None:
    assert store.create_run(run_id, "wf", NewEvent(RUN_STARTED, "", {}, b"in"), {"q": "x"})


def push_take(store: RedisEventStore, key: str, rounds: int) -> None:
    """Each reply must be the one of this very request (fails if two users share a socket)."""
    for i in range(rounds):
        blob = f"{key}-{i}".encode() + b"\x00\xff"
        store.push_buffered_event(key, blob, 60_000)
        assert store.claim_buffered_event(key, "o") == blob
        assert store.settle_buffered_event(key, "o")


def wait_until(predicate: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.01)


# -- which clients pin ----------------------------------------------------------------------------
def test_a_plain_client_runs_scripts_on_one_pinned_connection_not_through_execute_command(
    make_client: Callable[..., redis.Redis], key_prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = make_client()
    store = RedisEventStore(client, key_prefix)
    assert store._scripts.pins_connections
    counter = counted(client, monkeypatch)
    start(store)  # the script pins; create_run's ZADD borrows another and gives it back
    (pinned,) = in_use(client)
    assert len(client.connection_pool._available_connections) == 1  # type: ignore[attr-defined]
    for _ in range(5):
        assert store.acquire_lease("r1", "t", 10_000)
        assert store.register_hook("h", "o") is None
    assert in_use(client) == {pinned}
    assert counter.script_calls == 0
    assert "ZADD" in counter.names  # the store's other commands keep redis-py's path


def test_a_large_payload_goes_ahead_of_its_script_on_the_pinned_connection(
    make_client: Callable[..., redis.Redis], key_prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = make_client()
    store = RedisEventStore(client, key_prefix)
    counter = counted(client, monkeypatch)
    start(store)
    (pinned,) = in_use(client)
    large = b"L" * LARGE_PAYLOAD_BYTES
    store.record_outcome("r1", "s1", NewEvent(STEP_COMPLETED, "s1", {}, large))
    assert in_use(client) == {pinned} and "HSET" not in counter.names
    assert store.read_since("r1", None)[-1].payload == large
    # The write ahead fails (the payloads key holds a string): its error is raised, the script
    # refused, and the connection is still in step for the next call.
    payloads = keys.run_keys(key_prefix, "r1").payloads
    client.delete(payloads)
    client.set(payloads, "not a hash")
    with pytest.raises(redis.ResponseError, match="WRONGTYPE"):
        store.record_outcome("r1", "s2", NewEvent(STEP_COMPLETED, "s2", {}, large))
    assert store.outcome_id("r1", "s2") is None
    client.delete(payloads)
    store.record_outcome("r1", "s2", NewEvent(STEP_COMPLETED, "s2", {}, large + b"2"))
    assert store.read_last("r1")[0].payload == large + b"2"
    assert in_use(client) == {pinned} and counter.script_calls == 0


@pytest.mark.parametrize("with_hiredis", [True, False])
def test_the_pinned_path_packs_as_redis_py_does(
    make_client: Callable[..., redis.Redis],
    key_prefix: str,
    monkeypatch: pytest.MonkeyPatch,
    with_hiredis: bool,
) -> None:
    if not with_hiredis:
        monkeypatch.setattr(scripts_module, "hiredis", None)
    elif scripts_module.hiredis is None:
        pytest.skip("hiredis is not installed")
    client = make_client()
    store = RedisEventStore(client, key_prefix)
    sent: list[Any] = []
    conn = client.connection_pool.get_connection()
    client.connection_pool.release(conn)
    command = ("EVALSHA", "0" * 40, 2, "k1", "k2", "text", b"\x00bytes", 7, "")
    packed = scripts_module._packed(conn, command)
    assert b"".join(packed) == b"".join(conn.pack_command(*command))
    with pytest.raises(redis.DataError):
        scripts_module._packed(conn, ("EVALSHA", "0" * 40, 0, None))
    monkeypatch.setattr(scripts_module, "_packed", lambda c, cmd: sent.append(cmd) or (
        conn.pack_command(*cmd)))  # fmt: skip
    start(store)
    assert store.acquire_lease("r1", "t", 10_000)
    assert sent and all(cmd[0] == "EVALSHA" for cmd in sent)


def test_fakeredis_keeps_redis_py_script_objects(monkeypatch: pytest.MonkeyPatch) -> None:
    client = fakeredis.FakeRedis(server=fakeredis.FakeServer())
    store = RedisEventStore(client, "t")
    assert not store._scripts.pins_connections
    counter = counted(client, monkeypatch)
    start(store)
    assert store.acquire_lease("r1", "t", 10_000)
    assert counter.script_calls >= 2
    client.close()


class SubclassedRedis(redis.Redis):
    pass


OTHER_CLIENTS: dict[str, Callable[[str], Any]] = {
    "subclass": lambda url: SubclassedRedis.from_url(url),
    "single-connection": lambda url: redis.Redis.from_url(url, single_connection_client=True),
    "one-connection-pool": lambda url: redis.Redis.from_url(url, max_connections=1),
    "pipeline": lambda url: redis.Redis.from_url(url).pipeline(transaction=False),
}


@pytest.mark.parametrize("make", OTHER_CLIENTS.values(), ids=OTHER_CLIENTS.keys())
def test_other_clients_keep_redis_py_path(make: Callable[[str], Any], redis_url: str) -> None:
    client = make(redis_url)
    try:
        assert not Scripts.register(client).pins_connections
    finally:
        client.reset() if isinstance(client, redis.client.Pipeline) else client.close()


# -- same replies ---------------------------------------------------------------------------------
def _masked(value: Any) -> Any:
    """A reply with what depends on the server clock (entry ids, deadlines) masked."""
    if isinstance(value, list):
        return [_masked(v) for v in value]
    if isinstance(value, bytes):
        return re.sub(rb"\d{13}(-\d+)?", b"<time>", value)
    if isinstance(value, int) and value > 10**12:
        return "<time>"
    return value


def _scenario(store: RedisEventStore) -> list[Any]:
    """Every kind of script reply the store meets: ints, bytes, nil, nested arrays, errors."""
    start(store)
    assert not store.create_run("r1", "wf", NewEvent(RUN_STARTED), {})
    assert store.acquire_lease("r1", "t", 10_000)
    assert not store.acquire_lease("r1", "other", 10_000)
    store.append_fenced("r1", "t", [NewEvent(STEP_SCHEDULED, "s1")], outbox=["s1"])
    store.record_outcome("r1", "s1", NewEvent(STEP_COMPLETED, "s1", {"a": 1}, b"v\x00"))
    store.record_outcome("r1", "s1", NewEvent(STEP_COMPLETED, "s1", {"a": 2}, b"w"))
    # A payload kept beside the log: its HSET goes ahead of the script.
    large = b"z" * LARGE_PAYLOAD_BYTES
    store.record_outcome("r1", "s2", NewEvent(STEP_COMPLETED, "s2", {}, large))
    assert store.read_since("r1", None)[-1].payload == large
    store.request_wake("r1")
    store.finish_pass("r1", "t", store.read_since("r1", None)[-1].entry_id)
    store.release_lease("r1", "t")
    store.set_status("r1", "completed")
    store.add_timer("timer", "r1", "t1", 0, {"x": 1})
    store.claim_due_timers(10_000)
    assert store.register_hook("h", "o1") is None
    assert store.register_hook("h", "o2") == "o1"
    assert store.replace_hook("h", "o1", "o2")
    assert store.delete_hook("h", "o2")
    store.push_buffered_event("k", b"\x00\xffblob", 60_000)
    assert store.claim_buffered_event("k", "o") == b"\x00\xffblob"
    assert store.settle_buffered_event("k", "o")
    assert store.claim_buffered_event("k", "o") is None
    with pytest.raises(RunNotFound):
        store.request_wake("missing")
    errors = []
    for script in (store._scripts.acquire_lease, store._scripts.add_timer):
        with pytest.raises(redis.ResponseError) as caught:
            script(keys=[f"{store.prefix}:bad"], args=["t", "not a number"])
        errors.append((type(caught.value), str(caught.value)))
    return errors


def test_replies_are_those_of_redis_py_script_objects(
    make_client: Callable[..., redis.Redis], key_prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    replies: list[tuple[str, Any]] = []
    inner = LuaScript.__call__

    def recording(self: LuaScript, keys: Any = (), args: Any = (), before: Any = None) -> Any:
        reply = inner(self, keys, args, before)
        replies.append((self.name, _masked(reply)))
        return reply

    monkeypatch.setattr(LuaScript, "__call__", recording)
    fast = RedisEventStore(make_client(), f"{key_prefix}:fast")
    with monkeypatch.context() as patch:
        patch.setattr(scripts_module, "_pinnable_pool", lambda client: None)
        slow = RedisEventStore(make_client(), f"{key_prefix}:slow")
    assert fast._scripts.pins_connections and not slow._scripts.pins_connections

    fast_errors = _scenario(fast)
    fast_replies, replies[:] = list(replies), []
    slow_errors = _scenario(slow)
    assert fast_replies == replies
    assert fast_errors == slow_errors
    kinds = {type(reply) for _, reply in fast_replies}
    assert {int, bytes, list, type(None)} <= kinds


# -- the server or the connection fails -----------------------------------------------------------
def test_scripts_the_server_forgot_are_loaded_again_on_the_pinned_connection(
    make_client: Callable[..., redis.Redis],
    redis_client: redis.Redis,
    key_prefix: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    store = RedisEventStore(make_client(), key_prefix)
    counter = counted(store.client, monkeypatch)
    start(store)
    redis_client.script_flush()
    assert store.acquire_lease("r1", "t", 10_000)
    assert len(store.append_fenced("r1", "t", [NewEvent(STEP_SCHEDULED, "s1")])) == 1
    sha = store._scripts.acquire_lease.sha
    assert redis_client.script_exists(sha) == [True]
    assert counter.script_calls == 0


def test_a_killed_connection_is_replaced_and_later_calls_pin_a_fresh_one(
    make_client: Callable[..., redis.Redis],
    redis_client: redis.Redis,
    client_name: str,
    key_prefix: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    store = RedisEventStore(make_client(), key_prefix)
    assert store.register_hook("a", "o") is None  # pins
    killed = server_ids(redis_client, client_name)
    assert killed
    for client_id in killed:
        redis_client.client_kill_filter(_id=client_id)
    assert store.register_hook("b", "o") is None
    assert store.register_hook("b", "o") is None
    fresh = server_ids(redis_client, client_name)
    assert fresh and not fresh & killed
    counter = counted(store.client, monkeypatch)
    push_take(store, "k", 5)
    assert counter.script_calls == 0  # pinned again
    assert server_ids(redis_client, client_name) == fresh


def _lose_next_reply(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The next reply read on any connection is lost after the server ran the command."""
    lost: list[int] = []
    inner = redis.connection.Connection.read_response

    def read_response(self: Any, *args: Any, **kwargs: Any) -> Any:
        reply = inner(self, *args, **kwargs)
        if not lost:
            lost.append(1)
            self.disconnect()
            raise redis.ConnectionError("reply lost")
        return reply

    monkeypatch.setattr(redis.connection.Connection, "read_response", read_response)
    return lost


def test_a_reply_lost_mid_request_is_retried_through_redis_py_and_the_pin_returned(
    make_client: Callable[..., redis.Redis], key_prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = make_client(retry=Retry(NoBackoff(), 1))  # from_url's default is no retry
    store = RedisEventStore(client, key_prefix)
    assert store.register_hook("warm", "o") is None
    (pinned,) = in_use(client)
    counter = counted(client, monkeypatch)
    lost = _lose_next_reply(monkeypatch)
    # The lost attempt claimed the hook; redis-py's retry runs the script again, as it would
    # have, and sees the hook held by the same owner.
    assert store.register_hook("h", "o") is None
    assert lost and counter.script_calls == 1
    # The failed pin went back to the pool (not leaked): redis-py's retry reused it.
    assert in_use(client) == set()
    assert client.connection_pool._available_connections == [pinned]  # type: ignore[attr-defined]
    push_take(store, "k", 3)
    assert counter.script_calls == 1  # later calls pinned a connection again
    assert len(in_use(client)) == 1


def test_a_client_that_does_not_retry_sees_the_error_and_no_second_run(
    make_client: Callable[..., redis.Redis], key_prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = make_client(retry=Retry(NoBackoff(), 0))
    store = RedisEventStore(client, key_prefix)
    assert store.register_hook("warm", "o") is None
    counter = counted(client, monkeypatch)
    _lose_next_reply(monkeypatch)
    with pytest.raises(redis.ConnectionError, match="reply lost"):
        store.push_buffered_event("k", b"once", 60_000)
    assert counter.script_calls == 0
    assert in_use(client) == set()
    assert client.llen(f"{key_prefix}:evbuf:k") == 1  # ran once, not retried
    assert store.claim_buffered_event("k", "o") == b"once"


# -- threads, fork, close -------------------------------------------------------------------------
def test_threads_get_their_own_connections_and_give_them_back_when_they_end(
    make_client: Callable[..., redis.Redis], key_prefix: str
) -> None:
    client = make_client()
    store = RedisEventStore(client, key_prefix)
    worked = threading.Barrier(3, timeout=20)
    done = threading.Barrier(3, timeout=20)
    failures: list[str] = []

    def work(name: str) -> None:
        try:
            push_take(store, name, 200)
        except BaseException:
            failures.append(traceback.format_exc())
        worked.wait()
        done.wait()

    threads = [threading.Thread(target=work, args=(f"w{i}",)) for i in range(2)]
    for thread in threads:
        thread.start()
    worked.wait()
    assert not failures, failures[0]
    assert len(in_use(client)) == 2
    done.wait()
    for thread in threads:
        thread.join()
    wait_until(lambda: in_use(client) == set())
    assert len(client.connection_pool._available_connections) == 2  # type: ignore[attr-defined]


def test_a_bounded_pool_is_never_pinned_past_half(
    redis_url: str, key_prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    pool = redis.BlockingConnectionPool.from_url(redis_url, max_connections=2, timeout=2)
    client = redis.Redis(connection_pool=pool)
    try:
        store = RedisEventStore(client, key_prefix)
        push_take(store, "main", 2)  # pins the one connection allowed
        counter = counted(client, monkeypatch)
        failures: list[str] = []

        def work() -> None:
            try:
                push_take(store, "other", 5)
            except BaseException:
                failures.append(traceback.format_exc())

        thread = threading.Thread(target=work)
        thread.start()
        thread.join()
        assert not failures, failures[0]
        assert counter.script_calls == 15  # through the pool's other connection
    finally:
        client.close()
        pool.disconnect()


def test_a_forked_child_takes_its_own_connection_and_leaves_the_parents_alone(
    make_client: Callable[..., redis.Redis], key_prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = make_client()
    store = RedisEventStore(client, key_prefix)
    push_take(store, "parent", 1)
    (pinned,) = in_use(client)
    sock = pinned._sock
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # fork() with threads, 3.12+
        pid = os.fork()
    if pid == 0:  # the child: never return into pytest
        status = 1
        try:
            push_take(store, "child", 200)
            status = 0 if pinned not in in_use(client) else 2
        except BaseException:
            traceback.print_exc()
        finally:
            os._exit(status)
    push_take(store, "parent", 200)  # while the child runs its own calls
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    counter = counted(client, monkeypatch)
    push_take(store, "parent", 5)
    assert in_use(client) == {pinned} and pinned._sock is sock  # not shut down by the child
    assert counter.script_calls == 0


def test_close_gives_the_pinned_connection_back_and_scripts_keep_working(
    make_client: Callable[..., redis.Redis], key_prefix: str
) -> None:
    client = make_client()
    store = RedisEventStore(client, key_prefix)
    push_take(store, "k", 1)
    (pinned,) = in_use(client)
    store._scripts.close()
    assert in_use(client) == set() and not pinned.is_connected
    push_take(store, "k", 1)
    assert len(in_use(client)) == 1
