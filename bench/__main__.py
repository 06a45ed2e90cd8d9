"""``python -m bench``: run the benchmark suite, print the table, write the JSON file.

Exits 0 whatever the verdicts (they are informational); 1 only when a scenario crashed.
"""

from __future__ import annotations

import argparse
import os
import platform
import secrets
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

SCENARIOS = ("floor", "sequential", "poll", "gather", "first", "payload", "throughput",
             "prefork", "memory")
#: Which worker each scenario runs on: (pool, concurrency, small cache bounds).
PHASES: list[tuple[tuple[str, ...], str, int, bool]] = [
    (("floor",), "", 0, False),
    (("sequential", "poll", "gather", "first", "payload"), "solo", 1, False),
    (("throughput", "prefork"), "prefork", 2, False),
    (("memory",), "solo", 1, True),
]
#: Cache bounds of the memory scenario's worker: small, so 10 000 runs exercise them.
MEMORY_SETTINGS = '{"durable_event_cache_runs": 256, "durable_hydration_cache_bytes": 32768}'
DEFAULT_JSON = Path(__file__).resolve().parent / "results" / "latest.json"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--redis", help="Redis URL (default: start a redis-server on a free port)")
    parser.add_argument("--repeat", type=int, default=None,
                        help="measured runs per scenario (default 5; 2 with --quick)")
    parser.add_argument("--quick", action="store_true", help="small sizes, 2 repeats: a smoke run")
    parser.add_argument("--only", action="append", choices=SCENARIOS, metavar="SCENARIO",
                        help=f"run only this scenario (repeatable): {', '.join(SCENARIOS)}")
    parser.add_argument("--memory", type=int, default=None, metavar="RUNS",
                        help="workflows the memory scenario runs (default 10000; 300 with "
                             "--quick; 0 skips it)")
    parser.add_argument("--json", type=Path, default=DEFAULT_JSON, help="where to write results")
    parser.add_argument("--placement", choices=("split", "free"), default="split",
                        help="split (default, with the bench's own redis-server on 2+ CPUs): "
                             "redis-server on CPU 0, the bench and its workers on the others; "
                             "free: wherever the scheduler puts them")
    return parser.parse_args(argv)


def place(server: Any, mode: str) -> str:
    """Pin redis-server to CPU 0 and this process (so the workers it starts too) to the rest.

    On a VM, a round trip between processes on two CPUs costs several times one on a shared
    CPU (here 120 us against 33 us for a PING), and the scheduler places each process anew:
    unpinned, the floor and a worker may get different placements, and so different round
    trips. Split, every round trip crosses CPUs, as it would to a Redis on its own host.
    """
    cpus = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    if mode != "split" or server is None or len(cpus) < 2:
        return "free"
    os.sched_setaffinity(server.proc.pid, {cpus[0]})
    os.sched_setaffinity(0, set(cpus[1:]))
    return f"split: redis-server on CPU {cpus[0]}, bench and workers on {cpus[1:]}"


def make_config(args: argparse.Namespace) -> Any:
    from .scenarios import Config

    if args.quick:
        return Config(repeat=args.repeat or 2, warmup=1, quick=True, seq_sizes=[0, 1, 10, 50],
                      gather_sizes=[10], payload_sizes=[10], prefork_sizes=[0, 10],
                      throughput_runs=100, memory_runs=300 if args.memory is None else args.memory,
                      floor_iterations=200)
    return Config(repeat=args.repeat or 5, warmup=1, quick=False,
                  seq_sizes=[0, 1, 10, 25, 50, 100, 1000], gather_sizes=[10, 25, 50, 100],
                  payload_sizes=[10, 50], prefork_sizes=[0, 10, 100, 1000], throughput_runs=1000,
                  memory_runs=10000 if args.memory is None else args.memory,
                  floor_iterations=2000)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from .workers import RedisServer

    server = None if args.redis else RedisServer.start()
    url = args.redis or server.url  # type: ignore[union-attr]
    args.placed = place(server, args.placement)
    prefix = f"bench{time.strftime('%H%M%S')}{secrets.token_hex(3)}"
    os.environ.update(BENCH_REDIS_URL=url, BENCH_PREFIX=prefix, BENCH_QUEUE=f"{prefix}-q")
    workdir = Path(tempfile.mkdtemp(prefix=f"durable-bench-{prefix}-"))
    try:
        return run(args, url, prefix, workdir)
    finally:
        cleanup(url, prefix)
        if server is not None:
            server.stop()


def run(args: argparse.Namespace, url: str, prefix: str, workdir: Path) -> int:
    from . import report
    from .measure import derive
    from .scenarios import Bench
    from .workers import start_worker

    config = make_config(args)
    selected = [s for s in SCENARIOS if not args.only or s in args.only]
    if config.memory_runs <= 0 and "memory" in selected:
        selected.remove("memory")
    bench = Bench(config)
    load_before = _load()
    env = {k: os.environ[k] for k in ("BENCH_REDIS_URL", "BENCH_PREFIX", "BENCH_QUEUE")}
    failures: list[str] = []
    for names, pool, concurrency, small_bounds in PHASES:
        todo = [n for n in names if n in selected]
        if not todo:
            continue
        if pool:
            print(f"-- starting worker --pool {pool} -c {concurrency}", file=sys.stderr)
            bench.worker = start_worker(pool, concurrency, env, workdir,
                                        MEMORY_SETTINGS if small_bounds else "")
        try:
            for name in todo:
                failures += _run_scenario(name, getattr(bench, name))
        finally:
            if bench.worker is not None:
                bench.worker.stop()
                bench.worker = None
    derive(bench.results)
    meta = _meta(args, url, prefix, config, workdir, bench)
    meta.update(load_before=load_before, load_after=_load(), own_redis=args.redis is None)
    print(report.render(bench.results, meta))
    report.write_json(args.json, bench.results, meta)
    print(f"\nJSON: {args.json}   worker logs: {workdir}")
    if failures:
        print(f"crashed: {', '.join(failures)}", file=sys.stderr)
        return 1
    return 0


def _load() -> str:
    """1-minute load average: other work on the machine shows up in the spread."""
    return f"{os.getloadavg()[0]:.2f}"


def _run_scenario(name: str, scenario: Callable[[], None]) -> list[str]:
    print(f"-- {name}", file=sys.stderr)
    started = time.perf_counter()
    try:
        scenario()
    except Exception:
        traceback.print_exc()
        return [name]
    finally:
        print(f"   {name}: {time.perf_counter() - started:.1f}s", file=sys.stderr)
    return []


def _meta(args: argparse.Namespace, url: str, prefix: str, config: Any, workdir: Path,
          bench: Any) -> dict[str, Any]:
    import celery
    import kombu
    import redis

    info = bench.redis.info("server")
    return {
        "when": time.strftime("%Y-%m-%d %H:%M:%S"),
        "redis": url,
        "redis_version": info.get("redis_version"),
        "prefix": prefix,
        "repeat": config.repeat,
        "quick": config.quick,
        "only": args.only,
        "cpus": os.cpu_count(),
        "placement": args.placed,
        "python": platform.python_version(),
        "celery": celery.__version__,
        "kombu": kombu.__version__,
        "redis_py": redis.__version__,
        "hiredis": redis.utils.HIREDIS_AVAILABLE,
        "workdir": str(workdir),
        "git": _git_state(),
    }


def _git_state() -> str:
    """HEAD, and the package files changed since (the package under test may be in flux)."""
    import subprocess

    root = Path(__file__).resolve().parent.parent
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, text=True,
                              capture_output=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "durable_celery"], cwd=root,
                               text=True, capture_output=True, check=True).stdout.split("\n")
    except (OSError, subprocess.CalledProcessError):
        return "?"
    changed = [line[3:] for line in dirty if line.strip()]
    return head + (f" + {len(changed)} changed package file(s)" if changed else "")


def cleanup(url: str, prefix: str) -> None:
    """Delete every key of this bench run (its prefix) from Redis."""
    import redis

    client = redis.Redis.from_url(url)
    try:
        batch: list[bytes] = []
        for key in client.scan_iter(match=f"{prefix}*", count=1000):
            batch.append(key)
            if len(batch) >= 1000:
                client.delete(*batch)
                batch.clear()
        if batch:
            client.delete(*batch)
    finally:
        client.close()


if __name__ == "__main__":
    sys.exit(main())
