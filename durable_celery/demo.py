"""``python -m durable_celery demo``: a real workflow on the embedded default, no server needed.

fakeredis (served on a loopback port) is the broker and the event store, and a real Celery worker
runs in this process. The demo prints each step as it starts and finishes, then the run's
timeline read back from its log, then the result.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Sequence
from typing import Any, TextIO

from celery import Celery

from . import Durable, RetryableError, current_step, gather
from .replay import events as ev
from .replay.events import Event
from .testing.embedded import EmbeddedRedis, run_worker

__all__ = ["build_app", "main", "timeline"]

_print_lock = threading.Lock()


def _say(out: TextIO, text: str) -> None:
    with _print_lock:
        out.write(text + "\n")
        out.flush()


def build_app(redis_url: str, out: TextIO = sys.stdout) -> tuple[Celery, Durable, Any]:
    """The demo's Celery app, Durable and checkout workflow, on ``redis_url``."""
    app = Celery("durable_demo", broker=redis_url)
    app.conf.broker_connection_retry_on_startup = True
    app.conf.durable_timer_poll_interval = 0.05
    durable = Durable(app)

    def announce(what: str) -> None:
        info = current_step()
        name = info.name.rsplit(".", 1)[-1] if info else "?"
        attempt = info.attempt if info else 1
        _say(out, f"  {what:<9} {name:<18} attempt {attempt}")

    @durable.step(name="demo.reserve_inventory")
    def reserve_inventory(order_id: str, items: list[str]) -> str:
        announce("starting")
        time.sleep(0.05)
        announce("finished")
        return f"rsv-{order_id}-{len(items)}"

    @durable.step(name="demo.charge_card", retries=3, backoff=0.1)
    def charge_card(order_id: str, cents: int) -> str:
        announce("starting")
        info = current_step()
        if info is not None and info.attempt == 1:
            announce("failed")
            raise RetryableError("card network timed out", after=0.2)
        announce("finished")
        return f"ch-{order_id}-{cents}"

    @durable.step(name="demo.send_receipt")
    def send_receipt(order_id: str) -> str:
        announce("starting")
        time.sleep(0.05)
        announce("finished")
        return f"receipt sent for {order_id}"

    @durable.step(name="demo.notify_warehouse")
    def notify_warehouse(order_id: str) -> str:
        announce("starting")
        time.sleep(0.05)
        announce("finished")
        return f"warehouse notified for {order_id}"

    @durable.step(name="demo.ship")
    def ship(order_id: str) -> str:
        announce("starting")
        announce("finished")
        return f"TRACK-{order_id.upper()}"

    @durable.workflow(name="demo.checkout")
    def checkout(order_id: str, items: list[str], cents: int) -> dict[str, Any]:
        reservation = reserve_inventory(order_id, items)
        payment = charge_card(order_id, cents)
        receipt, warehouse = gather(send_receipt.defer(order_id), notify_warehouse.defer(order_id))
        tracking = ship(order_id)
        return {
            "reservation": reservation,
            "payment": payment,
            "receipt": receipt,
            "warehouse": warehouse,
            "tracking": tracking,
        }

    return app, durable, checkout


def timeline(history: list[Event]) -> list[tuple[str, str, str, str, str]]:
    """Rows of (cid, step, attempt, duration, outcome) for every step attempt in the log."""
    names = {e.cid: str(e.meta.get("name", "")) for e in history if ev.records_call(e)}
    rows = []
    for event in history:
        if event.kind not in (ev.STEP_COMPLETED, ev.STEP_RETRYING, ev.STEP_FAILED):
            continue
        outcome = {
            ev.STEP_COMPLETED: "completed",
            ev.STEP_RETRYING: f"retry in {event.meta.get('delay', '?')}s "
            f"({str(event.meta.get('error', '')).rsplit('.', 1)[-1]})",
            ev.STEP_FAILED: f"failed ({event.meta.get('error', '')})",
        }[event.kind]
        rows.append(
            (
                event.cid,
                names.get(event.cid, "?").rsplit(".", 1)[-1],
                str(event.meta.get("attempt", 1)),
                f"{float(event.meta.get('ms', 0)):.1f} ms",
                outcome,
            )
        )
    return rows


def _table(rows: Sequence[tuple[str, ...]], header: tuple[str, ...]) -> str:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    line = "  ".join("-" * w for w in widths)
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    return "\n".join([fmt.format(*header), line, *(fmt.format(*r) for r in rows)])


def main(out: TextIO = sys.stdout) -> int:
    with EmbeddedRedis() as redis:
        app, durable, checkout = build_app(redis.url, out)
        _say(out, f"durable_celery demo: embedded fakeredis at {redis.url}, worker in-process\n")
        with run_worker(app, concurrency=4):
            started = time.perf_counter()
            run = checkout.start("o-42", ["book", "lamp"], 1999, run_id="demo-o-42")
            _say(out, f"started run {run.run_id} (workflow {run.workflow})")
            result = run.result(timeout=60)
            elapsed = time.perf_counter() - started
        history = durable.history(run.run_id)
        _say(
            out,
            f"\nrun {run.run_id}: {run.status()} in {elapsed:.2f}s, {len(history)} log entries\n",
        )
        _say(out, _table(timeline(history), ("id", "step", "attempt", "duration", "outcome")))
        _say(out, "\nresult:")
        for key, value in result.items():
            _say(out, f"  {key:<12} {value}")
    return 0
