"""The embedded default: fakeredis as broker and event store, a Celery worker in this process.

fakeredis is served over a loopback TCP socket (``fakeredis.TcpFakeServer``) because kombu's
Redis transport polls real sockets; everything else is the product's own Redis code path, so a
workflow that runs here runs the same against a real Redis.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from celery import Celery

__all__ = ["EmbeddedRedis", "run_worker"]


def _handler_class() -> type:
    """fakeredis's TCP handler drops the connection after any error reply; real Redis keeps it
    (and redis-py relies on that: EVALSHA answers NOSCRIPT, then the client sends EVAL)."""
    from fakeredis._clients._tcp_server import TCPFakeRequestHandler
    from redis.exceptions import ResponseError

    class KeepAliveHandler(TCPFakeRequestHandler):
        def setup(self) -> None:
            super().setup()
            read = self.current_client.read_response

            def read_response(*args: Any, **kwargs: Any) -> Any:
                try:
                    return read(*args, **kwargs)
                except ResponseError as error:  # sent back as an error reply, like Redis
                    return error

            self.current_client.read_response = read_response  # type: ignore[method-assign]

    return KeepAliveHandler


class EmbeddedRedis:
    """An in-memory Redis (fakeredis) answering on ``127.0.0.1:<free port>``."""

    def __init__(self) -> None:
        from fakeredis import TcpFakeServer

        self._server = TcpFakeServer(("127.0.0.1", 0), server_type="redis")
        self._server.RequestHandlerClass = _handler_class()
        self._server.daemon_threads = True
        self.port: int = self._server.server_address[1]
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="embedded-redis", daemon=True
        )

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> EmbeddedRedis:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> EmbeddedRedis:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


@contextlib.contextmanager
def run_worker(
    app: Celery,
    *,
    concurrency: int = 4,
    pool: str = "threads",
    loglevel: str = "WARNING",
    **options: Any,
) -> Iterator[Any]:
    """Run a real Celery worker for ``app`` in a thread of this process until the block ends."""
    from celery.contrib.testing.worker import start_worker

    app.conf.setdefault("broker_connection_retry_on_startup", True)
    logging.getLogger("celery").setLevel(loglevel)
    with start_worker(
        app,
        pool=pool,
        concurrency=concurrency,
        perform_ping_check=False,
        loglevel=loglevel,
        shutdown_timeout=10.0,
        **options,
    ) as worker:
        yield worker
