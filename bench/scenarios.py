"""The scenarios. Each durable run is timed from ``start()`` to the return of ``result()``, one run
at a time, after a warm-up; variants of one size run in interleaved rounds (see :mod:`.measure`).

``result()`` is called once the worker has announced the run's end (see :mod:`bench.app`), so the
waiting is a BLPOP like the Celery baseline's; the ``poll`` scenario measures ``result()``
waiting on its own.
"""

from __future__ import annotations

import base64
import os
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import redis
from celery import chain, chord

from . import app as b
from .measure import Recorder, Result, Run, Variant, pass_figures
from .workers import vm_kb

PAYLOAD_BYTES = 10 * 1024
#: How many times more rounds the blocks of target sizes run. A ratio of two medians of noisy
#: runs spreads by about +-15% at 5-10 rounds on a 2-vCPU VM (the same code read 1.11x and
#: 1.57x); three times the rounds narrow that by about the square root of three.
TARGET_ROUNDS_FACTOR = 3
#: The sizes the growth targets compare, per step.
GROWTH_SIZES = (10, 1000)


@dataclass
class Config:
    repeat: int
    warmup: int
    quick: bool
    seq_sizes: list[int]
    gather_sizes: list[int]
    payload_sizes: list[int]
    prefork_sizes: list[int]
    throughput_runs: int
    memory_runs: int
    floor_iterations: int

    def rounds_for(self, size: int, *, target: bool = False) -> int:
        """Sizes of 500 and more are repeated at most 3 times (long, and their spread small);
        the sizes a target is read at ``TARGET_ROUNDS_FACTOR`` times as often (short, and the
        verdict hangs on their spread)."""
        if size >= 500:
            return min(self.repeat, 3)
        if target and not self.quick:
            return self.repeat * TARGET_ROUNDS_FACTOR
        return self.repeat


class Bench(Recorder):
    def __init__(self, config: Config) -> None:
        super().__init__(b.client(), config.repeat, config.warmup)
        self.config = config
        self.floor_client = redis.Redis.from_url(b.REDIS_URL)

    # -- one run -----------------------------------------------------------------------------------
    def wait_done(self, run_ids: Iterable[str], timeout: float) -> None:
        """Pop run ids the worker announced as finished until every one of ``run_ids`` is seen."""
        pending = set(run_ids)
        deadline = time.monotonic() + timeout
        while pending:
            popped = self.redis.blpop([b.DONE_KEY], timeout=max(deadline - time.monotonic(), 0.01))
            if popped is None:
                raise TimeoutError(f"{len(pending)} run(s) not finished after {timeout}s")
            pending.discard(_text(popped[1]))

    def durable_run(self, wf: Any, args: tuple[Any, ...], expect: Any = None, *,
                    poll: bool = False) -> Run:
        timeout = 60.0 + 0.2 * (args[0] if args and isinstance(args[0], int) else 0)
        started = time.perf_counter()
        handle = wf.start(*args)
        if not poll:
            self.wait_done([handle.run_id], timeout)
        before = time.perf_counter()
        value = handle.result(timeout=timeout)
        ended = time.perf_counter()
        if expect is not None and value != expect:
            raise AssertionError(f"{wf.name}{args[:1]}: returned {value!r}, expected {expect!r}")
        return Run(ended - started, handle.run_id, ended - before)

    def canvas_run(self, make: Any, size: int) -> Run:
        key = f"{b.PREFIX}:canvas:{uuid.uuid4().hex}"
        signature = make(key)  # built before the clock: only sending and running are timed
        started = time.perf_counter()
        signature.apply_async()
        if self.redis.blpop([key], timeout=60.0 + 0.2 * size) is None:
            raise TimeoutError(f"canvas of {size} did not finish")
        return Run(time.perf_counter() - started)

    def durable(self, key: str, wf: Any, args: tuple[Any, ...], expect: Any = None,
                warm_args: tuple[Any, ...] | None = None, **options: Any) -> Variant:
        return Variant(
            key,
            once=lambda: self.durable_run(wf, args, expect, **options),
            warm=lambda: self.durable_run(wf, warm_args or args, **options),
        )

    def canvas(self, key: str, make: Any, size: int, warm: Any = None) -> Variant:
        return Variant(key, once=lambda: self.canvas_run(make, size),
                       warm=lambda: self.canvas_run(warm or make, size))

    def floor_sample(self, iterations: int) -> Run:
        """One XADD + one XRANGE of what is new, per iteration: seconds per iteration."""
        client, stream = self.floor_client, f"{b.PREFIX}:floor"
        # An entry shaped like a step outcome: kind, correlation id, packed meta, small payload.
        fields: dict[str | bytes, str | bytes] = {
            "k": "step_completed", "c": "s1", "m": b"\x83\xa1n\xa4noop\xa1a\x01\xa2ms\xcb",
            "p": b"\x01" * 24,
        }
        last = client.xadd(stream, fields)  # type: ignore[arg-type]  # redis-py's dict invariance
        started = time.perf_counter()
        for _ in range(iterations):
            new = client.xadd(stream, fields)  # type: ignore[arg-type]
            client.xrange(stream, f"({_text(last)}", "+")
            last = new
        seconds = (time.perf_counter() - started) / iterations
        client.delete(stream)
        return Run(seconds)

    # -- scenarios ---------------------------------------------------------------------------------
    def floor(self) -> None:
        """The physical floor of one step, alone (no worker); also sampled during ``sequential``."""
        iterations = self.config.floor_iterations
        self.floor_sample(iterations)  # warm-up
        self.result("floor/xadd+xrange/1",
                    [self.floor_sample(iterations).seconds for _ in range(self.config.repeat)])
        client = self.floor_client

        def pings() -> float:
            started = time.perf_counter()
            for _ in range(iterations):
                client.ping()
            return (time.perf_counter() - started) / iterations

        pings()
        self.result("floor/ping/1", [pings() for _ in range(self.config.repeat)])

    def sequential(self) -> None:
        floor: list[float] = []
        for n in self.config.seq_sizes:
            warm = (min(n, 50),)
            variants = [
                self.durable(f"seq/inline/{n}", b.seq_inline, (n,), n, warm),
                self.durable(f"seq/dispatch/{n}", b.seq_dispatch, (n,), n, warm),
                self.canvas(f"seq/chain/{n}", lambda k, n=n: chain_of(n, 0, k), n,
                            lambda k, n=n: chain_of(min(n, 50), 0, k)),
                Variant("floor/during-seq/1", once=lambda: self.floor_sample(100),
                        warm=lambda: None, adaptive=False),
            ]
            if n:
                variants += self.zeros(variants[:3], n, {
                    "inline": self.durable(f"zero/inline/{n}", b.seq_inline, (0,), 0),
                    "dispatch": self.durable(f"zero/dispatch/{n}", b.seq_dispatch, (0,), 0),
                    "chain": self.canvas(f"zero/chain/{n}", lambda k: chain_of(0, 0, k), 0),
                })
            # Targets: seq 50 (inline, dispatch), and seq 10 as the growth targets' base.
            self.block(variants, self.config.rounds_for(n, target=n in (10, 50)))
            floor += self.results.pop("floor/during-seq/1").samples
        self.result("floor/during-seq/1", floor)
        if GROWTH_SIZES[1] in self.config.seq_sizes:
            self.growth()

    def growth(self) -> None:
        """The growth targets: durable runs of 10 and of 1000 steps in the same rounds, and no
        chain. Measured in the blocks above, the two sizes are a minute apart, at whatever
        speed the machine had then (the same code read 1.06x and 1.28x in two runs), and the
        1000-step runs share their rounds with 1000-link chains, whose messages grow with the
        chain and leave the worker's heap several times larger. The short runs go five times
        per round, as do their 0-step twins."""
        short, long = GROWTH_SIZES
        variants: list[Variant] = []
        for mode, wf in (("inline", b.seq_inline), ("dispatch", b.seq_dispatch)):
            sized = [self.durable(f"growth/{mode}/{n}", wf, (n,), n, (min(n, 50),))
                     for n in (short, long)]
            zero = self.durable(f"zero/growth-{mode}/0", wf, (0,), 0)
            short_zero = self.durable(f"zero/growth-{mode}-short/0", wf, (0,), 0)
            sized[0].pair, sized[1].pair = short_zero.key, zero.key
            for variant in (sized[0], short_zero):
                variant.per_round = 5
            zero.adaptive = short_zero.adaptive = sized[0].adaptive = False
            variants += [*sized, zero, short_zero]
        self.block(variants, self.config.repeat)

    @staticmethod
    def zeros(variants: list[Variant], n: int, zeros: dict[str, Variant]) -> list[Variant]:
        """Pair each variant with its 0-step twin, measured in the same rounds (the twins do not
        extend a block: they are short, and the block's length is the sized variants' call)."""
        for variant in variants:
            variant.pair = zeros[variant.key.split("/")[1]].key
        for zero in zeros.values():
            zero.adaptive = False
        return list(zeros.values())

    def poll(self) -> None:
        """Inline runs waited for by ``result()`` alone, against the same runs waited by push."""
        for n in (10,) if self.config.quick else (10, 50):
            self.block([self.durable(f"poll/inline/{n}", b.seq_inline, (n,), n, poll=True)],
                       self.config.repeat)

    def gather(self) -> None:
        for n in self.config.gather_sizes:
            self.block([
                self.durable(f"gather/durable/{n}", b.gather_wf, (n,), n * (n + 1) // 2),
                self.canvas(f"gather/chord/{n}", lambda k, n=n: chord_of(n, k), n),
            ], self.config.rounds_for(n, target=n == 100))

    def first(self) -> None:
        n = 10
        variant = self.durable(f"first/durable/{n}", b.first_wf, (n,), 0)
        variant.after = lambda run: self.settle(run.run_id or "", n)
        warm = variant.warm
        variant.warm = lambda: self.settle(warm().run_id, n)
        self.block([variant], self.config.repeat)

    def settle(self, run_id: str, steps: int, timeout: float = 30.0) -> None:
        """Wait until the losers of a race are recorded and their passes are over."""
        store = b.durable.runtime.store
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            done = sum(e.kind == "step_completed" for e in store.read_since(run_id, None))
            if done >= steps and not store.wake_pending(run_id):
                return
            time.sleep(0.005)
        raise TimeoutError(f"run {run_id}: stragglers not settled after {timeout}s")

    def payload(self) -> None:
        blob = base64.b64encode(os.urandom(PAYLOAD_BYTES * 3 // 4)).decode()  # 10 KiB of text
        size = len(blob)
        for n in self.config.payload_sizes:
            warm = (min(n, 10), blob)
            seq = [
                self.durable(f"payload-seq/inline/{n}", b.payload_seq_inline, (n, blob), size,
                             warm),
                self.durable(f"payload-seq/dispatch/{n}", b.payload_seq_dispatch, (n, blob), size,
                             warm),
                self.canvas(f"payload-seq/chain/{n}", lambda k, n=n: chain_of(n, blob, k), n,
                            lambda k: chain_of(10, blob, k)),
            ]
            zeros = self.zeros(seq, n, {
                "inline": self.durable(f"zero/payload-inline/{n}", b.payload_seq_inline,
                                       (0, blob), size),
                "dispatch": self.durable(f"zero/payload-dispatch/{n}", b.payload_seq_dispatch,
                                         (0, blob), size),
                "chain": self.canvas(f"zero/payload-chain/{n}", lambda k: chain_of(0, blob, k), 0),
            })
            gather = self.durable(f"payload-gather/durable/{n}", b.payload_gather, (n, blob),
                                  size * n, warm)
            # The same workloads without payload, in the same rounds: the payload targets'
            # denominators (figures from another block would carry another moment's load).
            ref_warm = (min(n, 10),)
            ref = [
                self.durable(f"payload-ref/inline/{n}", b.seq_inline, (n,), n, ref_warm),
                self.durable(f"payload-ref/dispatch/{n}", b.seq_dispatch, (n,), n, ref_warm),
            ]
            ref_zeros = self.zeros(ref, n, {
                "inline": self.durable(f"zero/ref-inline/{n}", b.seq_inline, (0,), 0),
                "dispatch": self.durable(f"zero/ref-dispatch/{n}", b.seq_dispatch, (0,), 0),
            })
            ref.append(self.durable(f"payload-ref/gather/{n}", b.gather_wf, (n,), n * (n + 1) // 2))
            # Inline runs are short (7-25 ms) beside the dispatched ones (100+ ms): five per
            # round, as their 0-step twins. With one, the inline payload ratio read 1.09x to
            # 1.31x in five runs of the same code.
            for variant in (seq[0], ref[0], zeros[0], ref_zeros[0]):
                variant.per_round = 5
            self.block([*seq, gather, *zeros, *ref, *ref_zeros],
                       self.config.rounds_for(n, target=n == 50))

    def prefork(self) -> None:
        """Sequential dispatch on two pool processes: passes of one run land on either."""
        for n in self.config.prefork_sizes:
            variants = [
                self.durable(f"seq-prefork/dispatch/{n}", b.seq_dispatch, (n,), n, (min(n, 50),)),
                self.canvas(f"seq-prefork/chain/{n}", lambda k, n=n: chain_of(n, 0, k), n,
                            lambda k, n=n: chain_of(min(n, 50), 0, k)),
            ]
            if n:
                variants += self.zeros(variants, n, {
                    "dispatch": self.durable(f"zero/prefork-dispatch/{n}", b.seq_dispatch, (0,), 0),
                    "chain": self.canvas(f"zero/prefork-chain/{n}", lambda k: chain_of(0, 0, k), 0),
                })
            self.block(variants, self.config.rounds_for(n))

    def throughput(self) -> None:
        runs, steps = self.config.throughput_runs, 5
        rounds = 1 if self.config.quick else min(self.config.repeat, 2)
        done_key = f"{b.PREFIX}:throughput"

        def durable_batch(wf: Any) -> Run:
            started = time.perf_counter()
            handles = [wf.start(steps) for _ in range(runs)]
            self.wait_done([h.run_id for h in handles], 600)
            seconds = time.perf_counter() - started
            if handles[-1].result(timeout=5) != steps:
                raise AssertionError("throughput: wrong result")
            return Run(seconds)

        def chain_batch(count: int) -> Run:
            signatures = [chain_of(steps, 0, done_key) for _ in range(count)]
            started = time.perf_counter()
            for signature in signatures:
                signature.apply_async()
            for _ in range(count):
                if self.redis.blpop([done_key], timeout=600) is None:
                    raise TimeoutError("throughput: chains did not finish")
            return Run(time.perf_counter() - started)

        for variant, wf in (("inline", b.seq_inline), ("dispatch", b.seq_dispatch)):
            self.wait_done([wf.start(steps).run_id for _ in range(20)], 60)  # warm-up
            assert self.worker is not None
            self.worker.timing_lines()
            self.worker.reset_peak_rss()
            batches = [durable_batch(wf) for _ in range(rounds)]
            result = self.result(f"throughput/{variant}/{runs}",
                                 [runs / r.seconds for r in batches], unit="runs/s")
            self._throughput_figures(result)
        chain_batch(20)
        assert self.worker is not None
        self.worker.reset_peak_rss()
        batches = [chain_batch(runs) for _ in range(rounds)]
        result = self.result(f"throughput/chain/{runs}", [runs / r.seconds for r in batches],
                             unit="runs/s")
        self._throughput_figures(result)

    def _throughput_figures(self, result: Result) -> None:
        assert self.worker is not None
        lines = self.worker.timing_lines()
        peaks = self.worker.peak_rss_kb()
        result.peak_rss_mb = sum(peaks.values()) / 1024
        result.extra["peak_rss_kb_per_process"] = peaks
        runs = {line["run"] for line in lines if "run" in line}
        pass_figures(result, lines, sorted(runs))

    def memory(self) -> None:
        """Many small runs (and some that stay suspended), then the worker's cache sizes."""
        assert self.worker is not None
        store = b.durable.runtime.store
        total, batch = self.config.memory_runs, 250
        parked_per_batch = batch // 10
        self.worker.reset_peak_rss()
        started = time.perf_counter()
        rss_after_first: int | None = None
        done = parked = 0
        while done < total:
            count = min(batch - parked_per_batch, total - done)
            handles = [b.seq_inline.start(3) for _ in range(count)]
            waiting = [b.parked.start(f"{b.PREFIX}:never:{uuid.uuid4().hex}").run_id
                       for _ in range(parked_per_batch)]
            self.wait_done([h.run_id for h in handles], 600)
            while any(store.wake_pending(run_id) for run_id in waiting):
                time.sleep(0.01)
            done += count
            parked += len(waiting)
            if rss_after_first is None:
                rss_after_first = self._worker_rss_kb()
        elapsed = time.perf_counter() - started
        stats = b.durable.start("bench.stats").result(timeout=60)
        result = self.result(f"memory/durable/{total}", [elapsed])
        result.extra.update(stats)
        result.extra.update(parked_runs=parked, rss_after_first_batch_kb=rss_after_first,
                            rss_end_kb=self._worker_rss_kb())
        result.peak_rss_mb = sum(self.worker.peak_rss_kb().values()) / 1024

    def _worker_rss_kb(self) -> int:
        assert self.worker is not None
        return sum(vm_kb(pid, "VmRSS") for pid in self.worker.pids())


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


# -- Celery canvases -------------------------------------------------------------------------------
def chain_of(n: int, value: Any, key: str) -> Any:
    """``n`` no-op links passing ``value`` on, then ``done`` (pushes the end to ``key``)."""
    if n == 0:
        return b.done.s(value, key)
    return chain(b.link.s(value), *(b.link.s() for _ in range(n - 1)), b.done.s(key))


def chord_of(n: int, key: str) -> Any:
    return chord([b.member.s(i) for i in range(n)], b.collect.s(key))
