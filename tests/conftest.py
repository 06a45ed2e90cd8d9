"""Session-wide fixtures: a real Redis, unique key prefixes, and every event store.

Redis comes from ``REDIS_URL`` when set, else from a ``redis-server`` this session starts on a
free port (no persistence, a temporary dir). Without either, Redis tests skip locally and fail
in CI (``CI=true``): a missing server must never turn into a green build. Tests never flush a
database: each one writes under its own key prefix and deletes exactly those keys afterwards.
"""

from __future__ import annotations

import gc
import os
import shutil
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

import fakeredis
import pytest
import redis

from durable_celery.store import EventStore, MemoryEventStore, RedisEventStore
from durable_celery.store.redis import LARGE_PAYLOAD_BYTES

REDIS_SERVER_BINARY = shutil.which("redis-server")

#: The stores every contract test runs against.
STORE_KINDS = ("memory", "fakeredis", "redis", "redis-beside")


def _no_redis(reason: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason} (CI=true: Redis tests must run in CI, not skip)")
    pytest.skip(reason)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class RedisServer:
    """A throwaway ``redis-server`` process on its own port and directory.

    ``kill()`` is SIGKILL (a crash: only what AOF already wrote survives), ``stop()`` a clean
    shutdown, ``restart()`` starts it again on the same port and directory, so an AOF or RDB
    file written before is loaded again.
    """

    def __init__(self, binary: str, directory: Path, extra_args: tuple[str, ...] = ()) -> None:
        self.binary = binary
        self.directory = directory
        self.extra_args = extra_args
        self.port = _free_port()
        self.process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def log_path(self) -> Path:
        return self.directory / "redis-server.log"

    def start(self, timeout: float = 10.0) -> RedisServer:
        if self.running:
            return self
        args = [self.binary, "--port", str(self.port), "--bind", "127.0.0.1"]
        args += ["--save", "", "--appendonly", "no", "--dir", str(self.directory)]
        args += list(self.extra_args)  # later arguments win, e.g. "--appendonly yes"
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - closed in _reap()
        self.process = subprocess.Popen(args, stdout=self._log, stderr=subprocess.STDOUT)
        self._wait_ready(timeout)
        return self

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        client = redis.Redis(port=self.port, socket_timeout=0.5, socket_connect_timeout=0.5)
        try:
            while True:
                assert self.process is not None
                if self.process.poll() is not None:
                    self._reap()
                    log = self.log_path.read_text(errors="replace")[-2000:]
                    raise RuntimeError(f"redis-server exited at start:\n{log}")
                try:
                    if client.ping():
                        return
                except (redis.ConnectionError, redis.TimeoutError, redis.BusyLoadingError):
                    pass
                if time.monotonic() > deadline:
                    self.kill()
                    raise RuntimeError(f"redis-server on port {self.port} did not answer PING")
                time.sleep(0.02)
        finally:
            client.close()

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def client(self, **kwargs: Any) -> redis.Redis:
        return redis.Redis.from_url(self.url, decode_responses=False, **kwargs)

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
        self._reap()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()  # SIGTERM: redis-server shuts down cleanly
        self._reap()

    def restart(self, *, crash: bool = True) -> RedisServer:
        self.kill() if crash else self.stop()
        return self.start()

    def _reap(self) -> None:
        if self.process is not None:
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
            self.process = None
        if self._log is not None:
            self._log.close()
            self._log = None


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A Redis for this session: ``REDIS_URL``, or a ``redis-server`` started on a free port."""
    from_env = os.environ.get("REDIS_URL")
    if from_env:
        yield from_env
        return
    if REDIS_SERVER_BINARY is None:
        _no_redis("no Redis: set REDIS_URL or put redis-server on PATH")
        return
    server = RedisServer(REDIS_SERVER_BINARY, tmp_path_factory.mktemp("redis"))
    server.start()
    try:
        yield server.url
    finally:
        server.kill()


@pytest.fixture
def redis_client(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url, decode_responses=False)
    yield client
    client.close()


@pytest.fixture
def key_prefix(redis_client: redis.Redis) -> Iterator[str]:
    """A fresh key prefix; every key under it is deleted after the test (never a FLUSHDB)."""
    prefix = "t" + uuid.uuid4().hex[:10]
    yield prefix
    # One DEL per key: keys of different runs sit in different cluster slots.
    pipe = redis_client.pipeline(transaction=False)
    for key in redis_client.scan_iter(match=f"{prefix}:*", count=1000):
        pipe.delete(key)
    pipe.execute()


@pytest.fixture
def redis_server_factory(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Callable[..., RedisServer]]:
    """Start extra throwaway servers: ``start("--appendonly", "yes")``; all die after the test."""
    if REDIS_SERVER_BINARY is None:
        _no_redis("no redis-server binary on PATH")
        return
    binary = REDIS_SERVER_BINARY
    servers: list[RedisServer] = []

    def start(*extra_args: str) -> RedisServer:
        server = RedisServer(binary, tmp_path_factory.mktemp("redis-extra"), extra_args)
        servers.append(server)
        return server.start()

    yield start
    for server in servers:
        server.kill()


@pytest.fixture(params=STORE_KINDS)
def store(request: pytest.FixtureRequest) -> Iterator[EventStore]:
    """Each event store in turn: memory, Redis store on fakeredis (Lua via lupa), real Redis,
    and real Redis keeping every payload beside the log (as it keeps large ones)."""
    kind = request.param
    if kind == "memory":
        yield MemoryEventStore()
    elif kind == "fakeredis":
        client = fakeredis.FakeRedis(server=fakeredis.FakeServer())
        yield RedisEventStore(client, prefix="t")
        client.close()
    else:
        client = request.getfixturevalue("redis_client")
        prefix = request.getfixturevalue("key_prefix")
        large = 0 if kind == "redis-beside" else LARGE_PAYLOAD_BYTES
        yield RedisEventStore(client, prefix=prefix, large_payload_bytes=large)


_tests_since_collect = [0]


@pytest.fixture(scope="session", autouse=True)
def _no_collection_inside_a_test() -> Iterator[None]:
    """Cyclic garbage is collected between tests, not in the middle of one. A collection runs
    the finalizers of whatever earlier tests left behind (parked workflows, clients) inside the
    frame that happened to allocate: once that was a namedtuple's generated ``__new__``, whose
    globals have empty ``__builtins__``, and the finalizer's import failed there
    (``KeyError: '__import__'``), which pytest reported as an error of an unrelated test."""
    gc.disable()
    yield
    gc.enable()


@pytest.fixture(scope="session", autouse=True)
def _imports_from_frames_without_builtins() -> Iterator[None]:
    """An interpreter artefact, not a failure of the code under test: C code that imports while
    finalizing an object (CPython's ``PyImport_Import``, e.g. to issue a warning) looks
    ``__import__`` up in the builtins of whatever Python frame is current, and the frame of a
    namedtuple's generated ``__new__`` has none. In two clean-clone runs of the suite out of
    about eight, that ``KeyError: '__import__'`` surfaced as an unraisable exception at the setup
    or teardown of an unrelated test. Exactly that case is reported on stderr instead of
    failing the test; every other unraisable exception still fails it."""
    previous = sys.unraisablehook

    def hook(unraisable: Any) -> None:
        frame = unraisable.exc_traceback.tb_frame if unraisable.exc_traceback else None
        if (
            isinstance(unraisable.exc_value, KeyError)
            and unraisable.exc_value.args == ("__import__",)
            and frame is not None
            and not frame.f_builtins
        ):
            print(
                f"note: an import from a frame without builtins ({frame.f_code.co_name} of "
                f"{frame.f_code.co_filename}) failed in a finalizer; ignored",
                file=sys.stderr,
            )
            return
        previous(unraisable)

    sys.unraisablehook = hook
    yield
    sys.unraisablehook = previous


@pytest.fixture(autouse=True)
def _collect_between_tests() -> Iterator[None]:
    yield
    _tests_since_collect[0] += 1
    if _tests_since_collect[0] % 20 == 0:
        gc.collect()
