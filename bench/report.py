"""The printed table, the targets (PASS/FAIL), and the JSON file."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from .measure import Result

Results = dict[str, Result]

GROUP_TITLES = {
    "floor": "Redis floor: one XADD + one XRANGE (bench process, redis-py + hiredis); "
             "during-seq: sampled in every round of the sequential scenario",
    "seq": "Sequential no-op steps vs a Celery chain",
    "poll": "Sequential inline, waited for by RunHandle.result() itself (ratio: vs seq inline)",
    "gather": "gather vs a Celery chord",
    "first": "first() over N dispatched steps (ratio: vs gather of N)",
    "payload-seq": "10 KiB payload passed step to step (ratio: vs a chain passing it)",
    "payload-gather": "10 KiB payload, gather (ratio: vs gather without payload, same rounds)",
    "payload-ref": "Without payload, measured in the payload rounds (the payload targets' base)",
    "growth": "Growth: 10 and 1000 steps in the same rounds, without chains (the growth targets)",
    "seq-prefork": "Sequential dispatch on prefork -c 2 vs a chain there",
    "throughput": "Throughput: runs of 5 steps started at once (ratio: time per run vs chain)",
    "memory": "Memory: many small runs on one worker process",
}


@dataclass
class Target:
    name: str
    limit: float
    measured: float | None
    how: str

    @property
    def verdict(self) -> str:
        if self.measured is None:
            return "not measured"
        return "PASS" if self.measured <= self.limit else "FAIL"


def _per_step(results: Results, key: str) -> float | None:
    r = results.get(key)
    return r.per_step_us if r else None


def _div(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def _largest(results: Results, group: str, variant: str, minimum: int) -> Result | None:
    found = [r for r in results.values()
             if r.group == group and r.variant == variant and r.size >= minimum]
    return max(found, key=lambda r: r.size) if found else None


def targets(results: Results) -> list[Target]:
    big = _largest(results, "seq", "dispatch", 500)
    big_chain = results.get(f"seq/chain/{big.size}") if big else None
    mem = results.get(next((k for k in results if k.startswith("memory/")), ""))
    floor = "floor/during-seq/1" if "floor/during-seq/1" in results else "floor/xadd+xrange/1"
    out = [
        Target("inline seq 50: per-step / Redis floor per step", 1.5,
               _div(_per_step(results, "seq/inline/50"), _per_step(results, floor)),
               f"seq/inline/50 per step / {floor} (one XADD + one XRANGE)"),
        Target("dispatch seq 50: per-step / chain link", 1.2,
               _div(_per_step(results, "seq/dispatch/50"), _per_step(results, "seq/chain/50")),
               "seq/dispatch/50 per step / seq/chain/50 per link"),
        Target(f"dispatch seq {big.size if big else '500+'}: per-step / chain link", 1.0,
               _div(big.per_step_us if big else None, big_chain.per_step_us if big_chain else None),
               "largest measured size >= 500"),
    ]
    for mode in ("inline", "dispatch"):
        group = "growth" if f"growth/{mode}/1000" in results else "seq"
        out.append(Target(
            f"growth {mode}: per-step 1000 / per-step 10", 1.2,
            _div(_per_step(results, f"{group}/{mode}/1000"),
                 _per_step(results, f"{group}/{mode}/10")),
            f"{group}/{mode}/1000 per step / {group}/{mode}/10 per step",
        ))
    gather, chord = results.get("gather/durable/100"), results.get("gather/chord/100")
    out.append(Target("gather 100 / chord 100", 1.0,
                      _div(gather.median if gather else None, chord.median if chord else None),
                      "medians, whole run"))
    for mode in ("inline", "dispatch"):
        ref = _first_key(results, f"payload-ref/{mode}/50", f"seq/{mode}/50")
        out.append(Target(
            f"10 KiB payload seq {mode} 50: per-step / no payload", 1.3,
            _div(_per_step(results, f"payload-seq/{mode}/50"), _per_step(results, ref)),
            f"payload-seq/{mode}/50 per step / {ref} per step",
        ))
    ref = _first_key(results, "payload-ref/gather/50", "gather/durable/50")
    pg, g = results.get("payload-gather/durable/50"), results.get(ref)
    out.append(Target("10 KiB payload gather 50 / gather 50", 1.3,
                      _div(pg.median if pg else None, g.median if g else None),
                      f"medians, over {ref}"))
    out.append(Target("memory: largest cache size / its bound", 1.0,
                      _memory_ratio(mem) if mem else None,
                      "max of hydration bytes, event-cache runs, live runs over their bounds"))
    return out


def _first_key(results: Results, *keys: str) -> str:
    """The first of ``keys`` that was measured (else the last one)."""
    return next((key for key in keys if key in results), keys[-1])


def _memory_ratio(mem: Result) -> float | None:
    e = mem.extra
    try:
        return float(max(
            e["hydration_bytes"] / e["hydration_bound_bytes"],
            e["event_runs"] / e["event_bound_runs"],
            e["live_runs"] / e["live_bound_runs"],
        ))
    except (KeyError, ZeroDivisionError):
        return None


# -- formatting ------------------------------------------------------------------------------------
def _ms(seconds: float) -> str:
    ms = seconds * 1000
    return f"{ms:.3f}" if ms < 10 else f"{ms:.1f}" if ms < 1000 else f"{ms:.0f}"


def _us(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}" if abs(value) < 100 else f"{value:.0f}"


def _opt(value: float | None, fmt: str) -> str:
    return "-" if value is None else format(value, fmt)


def _row(r: Result) -> list[str]:
    if r.unit == "runs/s":
        median, spread = f"{r.median:.0f}/s", f"{min(r.samples):.0f}-{max(r.samples):.0f}/s"
    elif r.group == "floor":
        low, high = min(r.samples) * 1e6, max(r.samples) * 1e6
        median, spread = f"{r.median * 1e6:.1f}us", f"{low:.1f}-{high:.1f}us"
    else:
        median, spread = _ms(r.median), f"{_ms(min(r.samples))}-{_ms(max(r.samples))}"
    return [
        f"{r.variant} {r.size}", r.pool, str(len(r.samples)), median, spread, _us(r.per_step_us),
        _opt(r.ratio, ".2f") + ("x" if r.ratio is not None else ""),
        _opt(r.passes_per_run, ".2f"), _opt(r.warm_pct, ".0f"), _opt(r.replayed_per_run, ".0f"),
        _opt(r.peak_rss_mb, ".0f"),
    ]


HEADER = ["scenario", "pool", "runs", "median ms", "min-max ms", "step us", "ratio",
          "passes/run", "warm%", "replayed/run", "RSS MB"]


BREAKDOWN_HEADER = ["scenario", "passes ms", "read", "replay", "append", "result()",
                    "evalsha", "xrange", "xadd", "cmds"]


def _breakdown_row(r: Result) -> list[str]:
    e = r.extra
    calls: dict[str, float] = e.get("redis_calls_per_run", {})

    def ms(name: str) -> str:
        value = e.get(name)
        return "-" if value is None else f"{value:.2f}"

    def n(name: str) -> str:
        return f"{calls.get(name, 0):.0f}" if calls else "-"

    total = f"{sum(calls.values()):.0f}" if calls else "-"
    return [f"{r.group} {r.variant} {r.size}", ms("pass_total_ms_per_run"),
            ms("pass_read_ms_per_run"),
            ms("pass_replay_ms_per_run"), ms("pass_append_ms_per_run"), ms("result_call_ms"),
            n("evalsha"), n("xrange"), n("xadd"), total]


def _table(rows: list[list[str]]) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = []
    for n, row in enumerate(rows):
        lines.append("  ".join(cell.rjust(w) if i else cell.ljust(w)
                               for i, (cell, w) in enumerate(zip(row, widths, strict=True))))
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def render(results: Results, meta: dict[str, Any]) -> str:
    out = [f"durable_celery bench  {meta['when']}  redis {meta['redis_version']} at "
           f"{meta['redis']}  repeat={meta['repeat']}  cpus={meta['cpus']}  "
           f"load {meta['load_before']} -> {meta['load_after']}  package {meta['git']}",
           f"placement: {meta.get('placement', 'free')}", ""]
    for group, title in GROUP_TITLES.items():
        rows = [r for r in results.values() if r.group == group]
        if not rows:
            continue
        out.append(f"== {title}")
        if group == "memory":
            out.extend(_memory_lines(r) for r in rows)
        else:
            out.append(_table([HEADER, *(_row(r) for r in rows)]))
        out.append("")
    breakdown = [r for r in results.values()
                 if r.group in GROUP_TITLES and r.group not in ("floor", "memory")
                 and ("pass_total_ms_per_run" in r.extra or "redis_calls_per_run" in r.extra)]
    if breakdown:
        out.append("== Per run: time inside orchestrator passes (timing log), result() call, "
                   "Redis commands (INFO commandstats, Lua-internal included)")
        out.append(_table([BREAKDOWN_HEADER, *(_breakdown_row(r) for r in breakdown)]))
        out.append("")
    out.append("== Targets")
    target_rows = [["target", "measured", "limit", "verdict"]]
    for t in targets(results):
        target_rows.append([t.name, _opt(t.measured, ".2f") + ("x" if t.measured else ""),
                            f"<= {t.limit:.1f}x", t.verdict])
    out.append(_table(target_rows))
    return "\n".join(out)


def _memory_lines(r: Result) -> str:
    e = r.extra
    return (
        f"{r.size} runs of 3 inline steps + {e.get('parked_runs')} runs left suspended, on {r.pool}"
        f", in {r.median:.1f}s\n"
        f"  hydration cache: {e.get('hydration_items')} items, {e.get('hydration_bytes')} B "
        f"(bound {e.get('hydration_bound_bytes')} B)\n"
        f"  event cache: {e.get('event_runs')} runs (bound {e.get('event_bound_runs')});  "
        f"live executions: {e.get('live_runs')} (bound {e.get('live_bound_runs')})\n"
        f"  worker RSS: {_kb(e.get('rss_after_first_batch_kb'))} after the first batch, "
        f"{_kb(e.get('rss_end_kb'))} at the end; peak {_opt(r.peak_rss_mb, '.0f')} MB"
    )


def _kb(value: Any) -> str:
    return "?" if value is None else f"{value / 1024:.0f} MB"


def write_json(path: Path, results: Results, meta: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    data = {
        "meta": meta,
        "results": [
            {**asdict(r), "median": r.median, "min": min(r.samples), "max": max(r.samples)}
            for r in results.values()
        ],
        "targets": [{**asdict(t), "verdict": t.verdict} for t in targets(results)],
    }
    path.write_text(json.dumps(data, indent=2, default=str) + "\n")

