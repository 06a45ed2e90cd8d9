"""The Lua scripts of the Redis store, loaded from ``lua/*.lua`` and registered on a client.

Every call is an EVALSHA that falls back to loading the script when the server does not know
it (after a restart, a failover or ``SCRIPT FLUSH``), as redis-py's ``register_script`` does.

These calls are the store's hot path (one per workflow step), and redis-py's command path
(retry wrapper, pool checkout and release, observability hooks) costs tens of microseconds per
call on top of the round trip. So on a plain ``redis.Redis`` client each thread keeps one
connection out of the client's pool for its script calls and talks to it directly; the replies
are the same, since redis-py has no response callback for EVALSHA. Any other client (cluster,
sentinel, fakeredis, client-side caching, a single-connection client...) goes through redis-py's
``Script`` objects unchanged.
"""

from __future__ import annotations

import contextlib
import inspect
import os
import threading
import weakref
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cache
from importlib.resources import files
from typing import Any

import redis
import redis.connection
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import DataError, NoScriptError, RedisError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

__all__ = ["SCRIPT_NAMES", "LuaScript", "Scripts", "lua_source"]

SCRIPT_NAMES = (
    "create_run",
    "append_fenced",
    "record_outcome",
    "record_and_begin",
    "finish_pass",
    "acquire_lease",
    "begin_pass",
    "release_lease",
    "request_wake",
    "set_status",
    "add_timer",
    "claim_due_timers",
    "register_hook",
    "replace_hook",
    "delete_hook",
    "push_buffered_event",
    "claim_buffered_event",
    "settle_buffered_event",
    "claim_redelivery",
    "record_ahead",
)

try:
    import hiredis
except ImportError:  # an extra: durable_celery[hiredis]
    hiredis = None  # type: ignore[assignment]

#: redis-py's packer when hiredis is installed: the pinned path calls hiredis directly.
_HIREDIS_PACKER = getattr(redis.connection, "HiredisRespSerializer", None)

#: What redis-py raises when a socket fails (it wraps most ``OSError``s, not all).
_CONNECTION_ERRORS = (RedisConnectionError, RedisTimeoutError, OSError)

# redis-py < 5.3 requires a command name to check a connection out; later versions warn if
# one is given.
_GET_CONNECTION_PARAMS = inspect.signature(redis.ConnectionPool.get_connection).parameters
_GET_CONNECTION_NEEDS_NAME = (
    "command_name" in _GET_CONNECTION_PARAMS
    and _GET_CONNECTION_PARAMS["command_name"].default is inspect.Parameter.empty
)


@cache
def lua_source(name: str) -> str:
    if name not in SCRIPT_NAMES:
        raise ValueError(f"unknown Lua script {name!r}; known: {', '.join(SCRIPT_NAMES)}")
    return (files(__package__) / "lua" / f"{name}.lua").read_text(encoding="utf-8")


class LuaScript:
    """One script, called as ``script(keys=[...], args=[...])``; returns what EVALSHA returns
    through redis-py (bytes, ints, lists: the store's clients never decode responses).

    ``before``: one command (a tuple of its words) sent ahead of the script, on the same
    connection and, when pinned, in the same round trip. The store writes large payloads with
    it, because every byte passed to Lua costs Redis about 2 ns (the interpreter hashes each
    string it is given whole), a command's argument nothing. A command that fails raises
    after the script's reply is read; the script must check what it relies on.
    """

    __slots__ = ("_pinned", "_script", "name", "source")

    def __init__(self, name: str, client: Any, pinned: _PinnedConnections | None) -> None:
        self.name = name
        self.source = lua_source(name)
        # redis-py's own Script: the whole call when nothing is pinned, the fallback of the
        # pinned path (with the client's retries), and the sha, hashed in the client's encoding.
        self._script: Any = client.register_script(self.source)
        self._pinned = pinned

    @property
    def sha(self) -> str:
        return str(self._script.sha)

    def __call__(
        self,
        keys: Sequence[Any] = (),
        args: Sequence[Any] = (),
        before: Sequence[Any] | None = None,
    ) -> Any:
        if self._pinned is None:
            return self.call_through_client(keys, args, before)
        return self._pinned.call(self, keys, args, before)

    def call_through_client(
        self, keys: Sequence[Any], args: Sequence[Any], before: Sequence[Any] | None = None
    ) -> Any:
        """The call through redis-py's own command path (pool, retries, NOSCRIPT reload);
        ``before`` is a call of its own there (cluster clients route each command)."""
        if before is not None:
            self._script.registered_client.execute_command(*before)
        return self._script(keys=keys, args=args)


@dataclass(frozen=True, slots=True)
class Scripts:
    """One registered script per name, callable with ``keys=`` and ``args=``."""

    create_run: LuaScript
    append_fenced: LuaScript
    record_outcome: LuaScript
    record_and_begin: LuaScript
    finish_pass: LuaScript
    acquire_lease: LuaScript
    begin_pass: LuaScript
    release_lease: LuaScript
    request_wake: LuaScript
    set_status: LuaScript
    add_timer: LuaScript
    claim_due_timers: LuaScript
    register_hook: LuaScript
    replace_hook: LuaScript
    delete_hook: LuaScript
    push_buffered_event: LuaScript
    claim_buffered_event: LuaScript
    settle_buffered_event: LuaScript
    claim_redelivery: LuaScript
    record_ahead: LuaScript
    _pinned: _PinnedConnections | None = field(default=None, repr=False)

    @classmethod
    def register(cls, client: Any) -> Scripts:
        pool = _pinnable_pool(client)
        pinned = None if pool is None else _PinnedConnections(pool)
        scripts: dict[str, Any] = {name: LuaScript(name, client, pinned) for name in SCRIPT_NAMES}
        return cls(**scripts, _pinned=pinned)

    @property
    def pins_connections(self) -> bool:
        """Whether script calls use per-thread pinned connections (a plain ``redis.Redis``)."""
        return self._pinned is not None

    def close(self) -> None:
        """Give this thread's pinned connection back to the pool and disconnect the ones other
        threads of this process hold (they reconnect if they call again). Scripts stay usable."""
        if self._pinned is not None:
            self._pinned.close()


def _is_fakeredis(cls: type) -> bool:
    return cls.__module__.startswith("fakeredis")


def _pinnable_pool(client: Any) -> Any | None:
    """The pool to pin connections from, or None when ``client`` must keep redis-py's path.

    Only the exact classes whose behaviour the pinned path reproduces: a subclass may override
    ``execute_command``, other pools route connections themselves (sentinel failover), a client
    that already owns a connection serialises on it, and client-side caching wraps connections
    in a proxy. An ``execute_command`` wrapped by tracing instrumentation (OpenTelemetry,
    ddtrace) is kept too: those users expect a span per script call.
    """
    if type(client) is not redis.Redis or _is_fakeredis(type(client)):
        return None
    if client.connection is not None or getattr(client, "_single_connection_client", False):
        return None
    if hasattr(type(client).execute_command, "__wrapped__"):
        return None
    pool = client.connection_pool
    if type(pool) not in (redis.ConnectionPool, redis.BlockingConnectionPool):
        return None
    if getattr(pool, "cache", None) is not None or _is_fakeredis(pool.connection_class):
        return None
    return pool if pool.max_connections >= 2 else None


def _take(pool: Any) -> Any:
    return pool.get_connection("EVALSHA") if _GET_CONNECTION_NEEDS_NAME else pool.get_connection()


def _give_back(pool: Any, conn: Any, pid: int) -> None:
    """Return the connection of a pinned slot that was garbage-collected (its thread ended, or
    its ``Scripts`` was dropped) to its pool, so the pool never counts it as in use forever.

    Never from a forked child: there the connection's socket is the parent's, and the child's
    pool has already forgotten it (redis-py resets a pool on first use after a fork)."""
    if os.getpid() == pid:
        pool.release(conn)


class _Pinned:
    """One thread's connection out of the pool, and the process that took it."""

    __slots__ = ("__weakref__", "busy", "conn", "on_collect", "pid")

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.conn: Any = None
        self.busy = False
        self.on_collect: weakref.finalize[Any, Any] | None = None


class _PinnedConnections:
    """Per-thread connections held out of one plain client's pool, for its script calls.

    A connection stays checked out of the pool (so ``pool.disconnect()``, as done by
    ``client.close()``, still reaches it; it reconnects on the next call), and goes back to the
    pool when its thread ends, when the ``Scripts`` is dropped, or when it fails. Releasing it,
    rather than dropping it, matters: the pool counts checked-out connections against
    ``max_connections`` and keeps them in its in-use set, so a dropped one would be lost to it.
    """

    def __init__(self, pool: Any) -> None:
        self._pool = pool
        # The pool also serves every other command of the threads holding a connection here:
        # pin at most half of a bounded pool, so that a thread never waits on the pins of
        # others for a connection; threads past that take the regular path.
        self._limit = pool.max_connections // 2
        self._local = threading.local()
        self._reset(os.getpid())

    def _reset(self, pid: int) -> None:
        # Also run first thing in a forked child: the parent's pins are not the child's to
        # count or close, and a lock a parent thread held at the fork would stay held.
        self._pid = pid
        self._lock = threading.Lock()
        self._all: weakref.WeakSet[_Pinned] = weakref.WeakSet()

    def call(
        self,
        script: LuaScript,
        keys: Sequence[Any],
        args: Sequence[Any],
        before: Sequence[Any] | None = None,
    ) -> Any:
        pinned = self._current()
        if pinned is None or pinned.busy:
            # No connection to spare, or a call reentered from this thread (a signal handler,
            # a finaliser) while its connection awaits a reply.
            return script.call_through_client(keys, args, before)
        conn = pinned.conn
        pinned.busy = True
        try:
            try:
                self._make_ready(conn)
            except BaseException:
                self._forget(pinned)  # as pool.get_connection releases what it cannot connect
                raise
            try:
                reply = _evalsha(conn, script, keys, args, before)
            except ResponseError:
                raise  # an error reply, read in full: the connection is still in step
            except _CONNECTION_ERRORS as error:
                self._forget(pinned)
                _retry_as_redis_py_would(conn.retry, error)
                return script.call_through_client(keys, args, before)
            except BaseException:
                # Interrupted between a request and its reply (a signal, a time limit): the
                # reply may still arrive, so this socket must not carry another request.
                conn.disconnect()
                raise
            should_reconnect = getattr(conn, "should_reconnect", None)
            if should_reconnect is not None and should_reconnect():
                conn.disconnect()  # asked by a maintenance notification; reconnects next call
            return reply
        finally:
            pinned.busy = False

    def _current(self) -> _Pinned | None:
        pinned: _Pinned | None = getattr(self._local, "pinned", None)
        pid = os.getpid()
        if pinned is None:
            return self._pin(pid)
        if pinned.pid != pid:
            # Inherited from the parent process across a fork. Dropped as it is: disconnecting
            # or releasing it would act on the parent's socket and on a pool that redis-py has
            # already reset for the child.
            self._local.pinned = None
            return self._pin(pid)
        return pinned

    def _pin(self, pid: int) -> _Pinned | None:
        if self._pid != pid:
            self._reset(pid)
        pinned = _Pinned(pid)
        with self._lock:
            if len(self._all) >= self._limit:
                return None
            self._all.add(pinned)  # counted before the checkout, so racing threads see it
        try:
            pinned.conn = _take(self._pool)  # may wait or fail as the regular path would
        except BaseException:
            with self._lock:
                self._all.discard(pinned)
            raise
        # When the thread ends, its thread-local slot (the only strong reference) goes, and
        # the connection returns to the pool. Not at interpreter exit: nothing to return to.
        pinned.on_collect = weakref.finalize(pinned, _give_back, self._pool, pinned.conn, pid)
        pinned.on_collect.atexit = False
        self._local.pinned = pinned
        return pinned

    def _make_ready(self, conn: Any) -> None:
        """What ``pool.get_connection`` does on every checkout: connect if needed, and replace
        a socket the server closed while idle (restart, ``CLIENT KILL``, idle timeout) before
        the request goes out, so that costs no retry. Pending data is only a sign of a broken
        connection when the server sends no push notifications, as the pool judges it."""
        if conn._sock is not None:
            try:
                if not conn.can_read() or self._expects_pushes():
                    return
            except _CONNECTION_ERRORS:
                pass
            conn.disconnect()
        conn.connect()

    def _expects_pushes(self) -> bool:
        enabled = getattr(self._pool, "maint_notifications_enabled", None)
        return bool(enabled is not None and enabled())

    def _forget(self, pinned: _Pinned) -> None:
        """Disconnect this thread's connection and release it to the pool; the next call takes
        another one. Only ever called by the owning thread, so it is released exactly once."""
        self._local.pinned = None
        if pinned.on_collect is not None:
            pinned.on_collect.detach()
        with self._lock:
            self._all.discard(pinned)
        pinned.conn.disconnect()
        self._pool.release(pinned.conn)

    def close(self) -> None:
        if self._pid != os.getpid():
            return  # nothing pinned in this process yet; the parent's pins are not ours
        mine: _Pinned | None = getattr(self._local, "pinned", None)
        with self._lock:
            others = [p for p in self._all if p is not mine and p.conn is not None]
        # Other threads' connections are disconnected, not released: they may be in use right
        # now, and a connection released under its user would end up with two. That is what
        # redis-py's own pool.disconnect() does to connections in use.
        for pinned in others:
            pinned.conn.disconnect()
        if mine is not None and mine.pid == self._pid:
            self._forget(mine)


def _evalsha(
    conn: Any,
    script: LuaScript,
    keys: Sequence[Any],
    args: Sequence[Any],
    before: Sequence[Any] | None = None,
) -> Any:
    # send_packed_command runs the connection's health check when one is due, as redis-py does.
    evalsha = ("EVALSHA", script.sha, len(keys), *keys, *args)
    if before is None:
        conn.send_packed_command(_packed(conn, evalsha))
    else:
        # One buffer, so one send: two sends let the server read, and answer, the first command
        # before the second arrives (measured: 15-20 us more per call than one send).
        conn.send_packed_command([b"".join([*_packed(conn, before), *_packed(conn, evalsha)])])
        try:
            conn.read_response()
        except ResponseError:
            # The script's reply is read too, so the connection stays in step: the script
            # refused (it checks what that command should have written) or ran without it;
            # the first error is the one to raise.
            with contextlib.suppress(ResponseError):
                conn.read_response()
            raise
    try:
        return conn.read_response()
    except NoScriptError:
        pass
    # The server lost its script cache: load the script on this connection and run it once
    # more, as redis-py's Script does.
    conn.send_command("SCRIPT", "LOAD", script.source)
    loaded = conn.read_response()
    loaded = loaded.decode() if isinstance(loaded, bytes) else str(loaded)
    if loaded != script.sha:
        raise RedisError(f"SCRIPT LOAD of {script.name} returned {loaded}, not {script.sha}")
    conn.send_packed_command(_packed(conn, evalsha))
    return conn.read_response()


def _packed(conn: Any, command: Sequence[Any]) -> list[bytes]:
    """``command`` in the Redis protocol, as ``conn`` packs it. With hiredis, its packer is
    called directly: redis-py's wrapper first looks at every argument in Python (measured on an
    append's 30 arguments: 9.7 us against 3.3 us). The store's arguments are str, bytes and int."""
    if hiredis is not None and type(conn._command_packer) is _HIREDIS_PACKER:
        try:
            return [hiredis.pack_command(tuple(command))]
        except TypeError as error:
            raise DataError(str(error)) from error
    return conn.pack_command(*command)  # type: ignore[no-any-return]


def _retry_as_redis_py_would(retry: Any, error: Exception) -> None:
    """Re-raise ``error`` unless the connection's retry policy would retry it, after the
    policy's backoff.

    A failed attempt on a pinned connection stands for redis-py's first attempt, which may have
    run the script. Whether another attempt follows is the client's ``Retry`` to decide, asked
    through its public API: a client set not to retry (``Retry(..., 0)``, or not on this
    error) must not see a script run twice because of the pinned path.
    """
    pending = [error]

    def attempt() -> None:
        if pending:
            raise pending.pop()

    retry.call_with_retry(attempt, lambda _error: None)
