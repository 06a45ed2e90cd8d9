"""Measurement machinery: results, interleaved rounds of variants, worker figures, derived figures.

A *block* measures several variants of one workload size (e.g. inline, dispatch and the chain of
50 steps) in rounds: each round runs every variant once, in a shuffled order, so load from
elsewhere on the machine hits them alike and their ratio stays fair. A block runs at least
``repeat`` rounds, and more (up to 5x) while a variant has been measured for less than
``MIN_MEASURED_S`` in total: short runs get more samples, long ones are not repeated needlessly.
"""

from __future__ import annotations

import random
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import redis

from .workers import Worker

MIN_MEASURED_S = 0.25


@dataclass
class Result:
    key: str  # "<group>/<variant>/<size>"
    group: str
    variant: str
    size: int
    pool: str
    samples: list[float]  # seconds per run (throughput: runs per second)
    unit: str = "s"
    per_step_us: float | None = None
    baseline: str | None = None
    ratio: float | None = None
    passes_per_run: float | None = None
    warm_pct: float | None = None
    replayed_per_run: float | None = None
    peak_rss_mb: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def median(self) -> float:
        return statistics.median(self.samples)


@dataclass
class Run:
    """What one measured run reports: its run id (durable only), seconds, seconds in result()."""

    seconds: float
    run_id: str | None = None
    result_s: float | None = None


@dataclass
class Variant:
    key: str
    once: Callable[[], Run]
    warm: Callable[[], Any]
    after: Callable[[Run], None] | None = None  # untimed, after each run (e.g. let stragglers end)
    adaptive: bool = True  # counts towards MIN_MEASURED_S (not the floor's short samples)
    #: Key of this variant's 0-step twin in the same block: per-step figures are then taken
    #: from round-by-round differences, ``(t(N) - t(0)) / N``.
    pair: str | None = None
    #: Runs per round (short variants of a block of long ones get several; their twins too).
    per_round: int = 1


class Recorder:
    """Runs blocks against one worker and turns them into :class:`Result` entries."""

    def __init__(self, client: redis.Redis, repeat: int, warmup: int) -> None:
        self.redis = client
        self.repeat = repeat
        self.warmup = warmup
        self.results: dict[str, Result] = {}
        self.worker: Worker | None = None

    def result(self, key: str, samples: list[float], unit: str = "s") -> Result:
        group, variant, size = key.split("/")
        pool = self.worker.label if self.worker else "-"
        found = Result(key, group, variant, int(size), pool, samples, unit=unit)
        self.results[key] = found
        return found

    def block(self, variants: list[Variant], rounds: int) -> list[Result]:
        worker = self.worker
        assert worker is not None
        assert any(v.adaptive for v in variants)
        for variant in variants:
            for _ in range(self.warmup):
                variant.warm()
        worker.timing_lines()  # the warm-ups' lines are not counted
        worker.reset_peak_rss()
        runs: dict[str, list[Run]] = {v.key: [] for v in variants}
        shuffler = random.Random(variants[0].key)
        calls: dict[str, dict[str, float]] = {v.key: {} for v in variants}
        done = 0
        while done < rounds or (
            done < 5 * rounds
            and min(sum(r.seconds for r in runs[v.key]) for v in variants if v.adaptive)
            < MIN_MEASURED_S
        ):
            # A new order each round: a run that follows an idle moment of the worker (e.g. the
            # floor sample) is slower by a millisecond or two; no variant may always get that.
            # A variant run several times per round is shuffled in run by run.
            order = [v for v in variants for _ in range(v.per_round)]
            shuffler.shuffle(order)
            for variant in order:
                before = self.command_calls()
                run = variant.once()
                _add(calls[variant.key], before, self.command_calls())
                runs[variant.key].append(run)
                if variant.after:
                    variant.after(run)
            done += 1
        # A pass writes its timing line after its final append: a waiter may see the run end
        # first (the ``poll`` scenario does). Give the last line a moment to land.
        time.sleep(0.05)
        lines = worker.timing_lines()
        peaks = worker.peak_rss_kb()
        results = []
        for variant in variants:
            measured = runs[variant.key]
            result = self.result(variant.key, [r.seconds for r in measured])
            n = len(measured)
            result.extra["redis_calls_per_run"] = {
                k: v / n for k, v in sorted(calls[variant.key].items(), key=lambda kv: -kv[1])
            }
            in_result = [r.result_s for r in measured if r.result_s is not None]
            if in_result:
                result.extra["result_call_ms"] = statistics.median(in_result) * 1000
            result.peak_rss_mb = sum(peaks.values()) / 1024
            result.extra["peak_rss_kb_per_process"] = peaks
            result.extra["peak_rss_scope"] = "block: " + ", ".join(v.key for v in variants)
            pass_figures(result, lines, [r.run_id for r in measured if r.run_id])
            if variant.pair is not None and result.size:
                zero = [r.seconds for r in runs[variant.pair]]
                diffs = [(r.seconds - z) / result.size for r, z in zip(measured, zero, strict=True)]
                result.extra["per_step_paired_us"] = statistics.median(diffs) * 1e6
                result.extra["paired_with"] = variant.pair
            results.append(result)
        return results

    def command_calls(self) -> dict[str, int]:
        """``INFO commandstats`` call counts (commands run inside Lua scripts included)."""
        stats = self.redis.info("commandstats")
        return {name.removeprefix("cmdstat_"): int(v["calls"]) for name, v in stats.items()}


def _add(total: dict[str, float], before: dict[str, int], after: dict[str, int]) -> None:
    for name, calls in after.items():
        delta = calls - before.get(name, 0) - (1 if name == "info" else 0)
        if delta:
            total[name] = total.get(name, 0) + delta


def pass_figures(result: Result, lines: list[dict[str, str]], run_ids: list[str]) -> None:
    """Orchestrator passes per run, warm share, replayed calls, pass time: from timing lines."""
    ids = set(run_ids)
    mine = [line for line in lines if line.get("run") in ids]
    if not mine:
        return
    n = len(run_ids)
    result.passes_per_run = len(mine) / n
    result.warm_pct = 100.0 * sum(line.get("warm") == "true" for line in mine) / len(mine)
    result.replayed_per_run = sum(int(line.get("replayed", 0)) for line in mine) / n
    for name in ("read_ms", "replay_ms", "append_ms", "total_ms"):
        result.extra[f"pass_{name}_per_run"] = sum(float(line.get(name, 0)) for line in mine) / n
    per_process: dict[str, int] = {}
    for line in mine:
        per_process[line["pid"]] = per_process.get(line["pid"], 0) + 1
    result.extra["passes_by_process"] = sorted(per_process.values())


def timed(fn: Callable[[], Any]) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


# -- derived figures -------------------------------------------------------------------------------
SEQUENTIAL = ("seq", "payload-seq", "seq-prefork", "payload-ref", "growth")
WHOLE_RUN = ("gather", "payload-gather", "first", "poll")


def derive(results: dict[str, Result]) -> None:
    """Per-step figures and ratios against the baselines measured in the same run."""
    for r in results.values():
        if r.group == "floor":
            r.per_step_us = r.median * 1e6
        elif r.group in SEQUENTIAL and r.size > 0 and "per_step_paired_us" in r.extra:
            r.per_step_us = r.extra["per_step_paired_us"]
            r.extra["per_step_basis"] = (
                f"median over rounds of (t(N) - t({r.extra['paired_with']})) / N"
            )
        elif r.group in SEQUENTIAL and r.size > 0:
            zero = results.get(f"{r.group}/{r.variant}/0") or results.get(f"seq/{r.variant}/0")
            if zero is not None:
                r.per_step_us = (r.median - zero.median) / r.size * 1e6
                r.extra["per_step_basis"] = f"(median(N) - median of {zero.key}) / N"
            else:
                r.per_step_us = r.median / r.size * 1e6
                r.extra["per_step_basis"] = "median / N (no 0-step figure measured)"
        elif r.group in WHOLE_RUN and r.size > 0:
            r.per_step_us = r.median / r.size * 1e6
            r.extra["per_step_basis"] = "median / N"
    for r in results.values():
        baseline = baseline_of(r, results)
        if baseline is None:
            continue
        r.baseline = baseline.key
        if r.unit == "runs/s":
            r.ratio = baseline.median / r.median  # time per run, relative
        elif r.group in SEQUENTIAL and r.per_step_us and baseline.per_step_us:
            r.ratio = r.per_step_us / baseline.per_step_us
        else:
            r.ratio = r.median / baseline.median


def baseline_of(r: Result, results: dict[str, Result]) -> Result | None:
    if r.variant in ("chain", "chord") or r.group in ("floor", "memory", "zero"):
        return None
    if r.group in SEQUENTIAL or r.group == "throughput":
        return results.get(f"{r.group}/chain/{r.size}")
    return {
        "gather": results.get(f"gather/chord/{r.size}"),
        "payload-gather": results.get(f"payload-ref/gather/{r.size}")
        or results.get(f"gather/durable/{r.size}"),
        "first": results.get(f"gather/durable/{r.size}"),
        "poll": results.get(f"seq/inline/{r.size}"),
    }.get(r.group)
