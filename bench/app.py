"""The benchmark's Celery app: Durable, the no-op steps and workflows, and the Celery baseline.

Configured from the environment, so the bench process (the producer) and the worker processes
it launches (``celery -A bench.app worker``) build the same app:

``BENCH_REDIS_URL``  broker, result backend and event store (one Redis, one DB)
``BENCH_PREFIX``     prefix of every key this bench run creates (Durable, kombu, Celery results)
``BENCH_QUEUE``      the one queue every task goes to
``BENCH_TIMING_DIR`` (workers) where each worker process writes its ``durable_celery.timing`` lines
``BENCH_SETTINGS``   (optional) JSON object of extra ``app.conf`` settings (the memory scenario
                     sets small cache bounds with it)
``BENCH_WORKER``     set to ``1`` in worker processes: installs the completion hook below

How the bench sees that a run finished: in worker processes, ``Orchestrator.passes`` (where
every pass goes, whether a task or a one-hop continuation took the lease) is wrapped to
LPUSH the run id to ``<prefix>:done`` when a pass leaves the run terminal (wherever that pass
runs: the orchestrator task, or a step task that continues its run); the bench BLPOPs it, then
calls ``RunHandle.result()``, which returns at once. The Celery baseline ends the same way: its
last task LPUSHes a key the bench BLPOPs. One LPUSH and one BLPOP wake-up on each side, so
neither side pays for polling.
"""

from __future__ import annotations

import faulthandler
import json
import logging
import os
import signal
import threading
import time
from typing import Any

import redis
from celery import Celery, signals

from durable_celery import Durable, first, gather, wait_for_event

REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/15")
PREFIX = os.environ.get("BENCH_PREFIX", "bench")
QUEUE = os.environ.get("BENCH_QUEUE", f"{PREFIX}-q")
DONE_KEY = f"{PREFIX}:done"
#: Dumps a worker process's stacks to its log (SIGUSR1 is taken: Celery's "cry" handler in the
#: main process, billiard's soft time limit in pool processes).
STACKS_SIGNAL = signal.SIGRTMIN + 2
TERMINAL = ("completed", "failed", "cancelled", "blocked")

app = Celery("bench", set_as_current=True)
app.conf.update(
    broker_url=REDIS_URL,
    # Only the chord baseline needs a result backend (Celery chords cannot work without one);
    # every other task ignores its result, durable steps included.
    result_backend=REDIS_URL,
    task_ignore_result=True,
    task_default_queue=QUEUE,
    broker_transport_options={"global_keyprefix": f"{PREFIX}:kombu:"},
    result_backend_transport_options={"global_keyprefix": f"{PREFIX}:celery:"},
    broker_connection_retry_on_startup=True,
    worker_enable_remote_control=False,  # readiness is a round-trip task, no pidbox traffic
    durable_redis_url=REDIS_URL,
    durable_key_prefix=PREFIX,
    durable_timer_poll_interval=0.05,
)
app.conf.update(json.loads(os.environ.get("BENCH_SETTINGS") or "{}"))
durable = Durable(app)

_clients: dict[int, redis.Redis] = {}


def client() -> redis.Redis:
    """One Redis client per process (a forked child makes its own)."""
    pid = os.getpid()
    if pid not in _clients:
        # redis-py 8 defaults to a 5 s socket timeout: too short for the bench's BLPOPs.
        _clients[pid] = redis.Redis.from_url(REDIS_URL, socket_timeout=700)
    return _clients[pid]


# -- durable steps: each no-op in both execution modes -------------------------------------------
@durable.step(execution="inline", name="bench.noop_inline")
def noop_inline(value: int) -> int:
    return value + 1


@durable.step(execution="dispatch", name="bench.noop_dispatch")
def noop_dispatch(value: int) -> int:
    return value + 1


@durable.step(execution="inline", name="bench.echo_inline")
def echo_inline(payload: str) -> str:
    return payload


@durable.step(execution="dispatch", name="bench.echo_dispatch")
def echo_dispatch(payload: str) -> str:
    return payload


@durable.step(execution="inline", name="bench.cache_stats")
def cache_stats() -> dict[str, Any]:
    """Sizes and bounds of this worker process's caches (runs inline: in the worker process)."""
    rt = durable.runtime
    return {
        "pid": os.getpid(),
        "hydration_items": len(rt.hydration),
        "hydration_bytes": rt.hydration.size_bytes,
        "hydration_bound_bytes": rt.hydration.max_bytes,
        "event_runs": len(rt.events),
        "event_bound_runs": rt.events.max_runs,
        "live_runs": len(rt.live),
        "live_bound_runs": rt.live.max_runs,
        **proc_memory_kb(os.getpid()),
    }


def proc_memory_kb(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM (peak RSS) of a process, in KiB, from /proc."""
    found: dict[str, int] = {}
    with open(f"/proc/{pid}/status", encoding="ascii") as status:
        for line in status:
            if line.startswith(("VmRSS:", "VmHWM:")):
                name, value = line.split(":", 1)
                found[name.lower() + "_kb"] = int(value.split()[0])
    return found


# -- durable workflows -----------------------------------------------------------------------------
@durable.workflow(name="bench.seq_inline")
def seq_inline(n: int) -> int:
    value = 0
    for _ in range(n):
        value = noop_inline(value)
    return value


@durable.workflow(name="bench.seq_dispatch")
def seq_dispatch(n: int) -> int:
    value = 0
    for _ in range(n):
        value = noop_dispatch(value)
    return value


@durable.workflow(name="bench.gather")
def gather_wf(n: int) -> int:
    return sum(gather(*(noop_dispatch.defer(i) for i in range(n))))


@durable.workflow(name="bench.first")
def first_wf(n: int) -> int:
    index, value = first(*(noop_dispatch.defer(i) for i in range(n)))
    return int(value) - index - 1  # 0 whoever wins


@durable.workflow(name="bench.payload_seq_inline")
def payload_seq_inline(n: int, payload: str) -> int:
    for _ in range(n):
        payload = echo_inline(payload)
    return len(payload)


@durable.workflow(name="bench.payload_seq_dispatch")
def payload_seq_dispatch(n: int, payload: str) -> int:
    for _ in range(n):
        payload = echo_dispatch(payload)
    return len(payload)


@durable.workflow(name="bench.payload_gather")
def payload_gather(n: int, payload: str) -> int:
    return sum(len(p) for p in gather(*(echo_dispatch.defer(payload) for _ in range(n))))


@durable.workflow(name="bench.parked")
def parked(key: str) -> int:
    """One inline step, then waits for an event that never comes: stays suspended (live)."""
    value = noop_inline(0)
    wait_for_event(key)
    return value


@durable.workflow(name="bench.stats")
def stats_wf() -> dict[str, Any]:
    return cache_stats()


# -- the plain Celery baseline ---------------------------------------------------------------------
@app.task(name="bench.link")  # type: ignore[untyped-decorator]
def link(value: Any) -> Any:
    """A chain link: passes its value on (ints +1, payloads as they are)."""
    return value + 1 if isinstance(value, int) else value


@app.task(name="bench.done")  # type: ignore[untyped-decorator]
def done(value: Any, key: str) -> None:
    """The chain's last task: tells the bench the chain ended."""
    client().lpush(key, len(value) if isinstance(value, str) else value)


@app.task(name="bench.member", ignore_result=False)  # type: ignore[untyped-decorator]
def member(value: int) -> int:
    """A chord header task (its result is stored: a chord needs that)."""
    return value + 1


@app.task(name="bench.collect")  # type: ignore[untyped-decorator]
def collect(values: list[int], key: str) -> None:
    client().lpush(key, sum(values))


@app.task(name="bench.ping")  # type: ignore[untyped-decorator]
def ping(key: str) -> None:
    client().lpush(key, os.getpid())


# -- worker-side instrumentation -------------------------------------------------------------------
class PerProcessFile(logging.Handler):
    """Writes each record's message to ``<dir>/timing-<pid>.log`` (one file per process).

    Lines are written by a thread of the process every 10 ms, not by the pass that logs them:
    the measurement should not cost the measured pass a write system call. The bench waits
    50 ms after a block before it reads the files.
    """

    FLUSH_EVERY = 0.01

    def __init__(self, directory: str) -> None:
        super().__init__(logging.INFO)
        self.directory = directory
        self._pid = 0
        self._lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if os.getpid() != self._pid:  # first line of this process (a pool child after fork)
            self._pid = os.getpid()
            self._lines = []
            threading.Thread(target=self._writer, args=(self._lines,), daemon=True).start()
        self._lines.append(record.getMessage())

    def _writer(self, lines: list[str]) -> None:
        path = os.path.join(self.directory, f"timing-{os.getpid()}.log")
        with open(path, "a", encoding="utf-8") as out:
            while True:
                time.sleep(self.FLUSH_EVERY)
                if lines:
                    taken = lines[:]
                    del lines[: len(taken)]
                    out.write("".join(line + "\n" for line in taken))
                    out.flush()


def _announce_finished_runs() -> None:
    """Wrap ``Orchestrator.passes`` (in worker processes only): when a pass leaves its run
    terminal, push the run id to ``DONE_KEY``. Every pass goes through it (the orchestrator task,
    a step task continuing its run, or one that went ahead with its outcome), so the bench hears
    of the end at once, for one LPUSH."""
    from durable_celery.runtime.orchestrator import Orchestrator

    original = Orchestrator.passes

    def passes(self: Orchestrator, run_id: str, *args: Any, **kwargs: Any) -> Any:
        report = original(self, run_id, *args, **kwargs)
        if report.status in TERMINAL:
            client().lpush(DONE_KEY, run_id)
        return report

    Orchestrator.passes = passes  # type: ignore[method-assign]


_stack_files: list[Any] = []


def _register_stack_dump(**_: Any) -> None:
    """On ``STACKS_SIGNAL``, write every thread's stack to ``stacks-<pid>.txt`` (one file per
    process, so pool processes dumping at once do not interleave)."""
    directory = os.environ.get("BENCH_TIMING_DIR") or "."
    path = os.path.join(directory, f"stacks-{os.getpid()}.txt")
    handle = open(path, "w", encoding="utf-8")  # noqa: SIM115 (kept open for faulthandler)
    _stack_files.append(handle)
    faulthandler.register(STACKS_SIGNAL, file=handle, all_threads=True)


if os.environ.get("BENCH_WORKER") == "1":
    _register_stack_dump()
    signals.worker_process_init.connect(_register_stack_dump, weak=False, dispatch_uid="bench-stk")
    _announce_finished_runs()
    timing_dir = os.environ.get("BENCH_TIMING_DIR")
    if timing_dir:
        timing = logging.getLogger("durable_celery.timing")
        timing.setLevel(logging.INFO)
        timing.propagate = False
        timing.addHandler(PerProcessFile(timing_dir))
