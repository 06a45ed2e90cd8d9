"""``celery -A proj durable ...``: inspect and steer runs from a shell.

Installed through Celery's ``celery.commands`` entry point, so it gets the app from ``-A``.
"""

from __future__ import annotations

import json
import sys
from datetime import datetime, timezone
from typing import Any

import click

from .errors import DurableError
from .integration.extension import Durable
from .replay import events as ev
from .runtime.replayer import replay_run

__all__ = ["durable"]


def _durable(ctx: click.Context) -> Durable:
    app = getattr(ctx.obj, "app", None)
    if app is None:
        raise click.UsageError("pass your Celery app: celery -A proj durable ...")
    try:
        return Durable.of(app)
    except DurableError as exc:
        raise click.UsageError(str(exc)) from None


def _when(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=timezone.utc).strftime("%Y-%m-%d %H:%M:%S")


def _table(rows: list[list[str]], header: list[str]) -> str:
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    return "\n".join([fmt.format(*header), *(fmt.format(*r) for r in rows)])


@click.group(name="durable", help="Inspect and steer durable_celery runs.")
def durable() -> None:
    """The ``celery durable`` command group."""


@durable.command(help="List runs, newest first.")
@click.option(
    "--status",
    type=click.Choice(["running", "completed", "failed", "blocked", "cancelled"]),
    default=None,
)
@click.option("--limit", type=int, default=50, show_default=True)
@click.pass_context
def runs(ctx: click.Context, status: str | None, limit: int) -> None:
    store = _durable(ctx).runtime.store
    rows = [
        [r.run_id, r.workflow, r.status, _when(r.created_ms), _when(r.updated_ms)]
        for r in store.list_runs(status=status, limit=limit)
    ]
    click.echo(_table(rows, ["run", "workflow", "status", "created (UTC)", "updated (UTC)"]))


@durable.command(help="Show one run: its status and its log, entry by entry.")
@click.argument("run_id")
@click.option("--payloads", is_flag=True, help="Decode and print recorded values too.")
@click.pass_context
def show(ctx: click.Context, run_id: str, payloads: bool) -> None:
    d = _durable(ctx)
    record = d.runtime.store.get_run(run_id)
    if record is None:
        raise click.ClickException(f"no run with id {run_id!r}")
    click.echo(f"run {run_id}  workflow {record.workflow}  status {record.status}")
    rows = []
    for e in d.runtime.store.read_since(run_id, None):
        detail = " ".join(f"{k}={v}" for k, v in e.meta.items() if k not in ("h", "code", "in"))
        if payloads and e.kind != ev.STEP_SCHEDULED and ev.recorded_input(e) is not None:
            detail += f"  input={_input(d, run_id, e)!r}"  # an inline step's one entry
        if payloads and e.payload is not None:
            detail += f"  value={_value(d, run_id, e)!r}"
        rows.append([e.entry_id, e.kind, e.cid, detail])
    click.echo(_table(rows, ["entry", "kind", "id", "detail"]))


def _input(d: Durable, run_id: str, event: ev.Event) -> Any:
    from .codec import Place

    try:
        blob = ev.recorded_input(event) or b""
        return d.runtime.codec.decode(blob, Place(run_id, ev.STEP_SCHEDULED, event.cid))
    except DurableError as exc:
        return f"<{exc}>"


def _value(d: Durable, run_id: str, event: ev.Event) -> Any:
    from .codec import Place

    cid = event.cid
    if event.kind == ev.STEP_RETRYING:
        cid = f"{event.cid}@{event.meta.get('attempt')}"
    try:
        return d.runtime.codec.decode(event.payload or b"", Place(run_id, event.kind, cid))
    except DurableError as exc:
        return f"<{exc}>"


@durable.command(help="Start a workflow by name; ARGS is a JSON list of arguments.")
@click.argument("workflow")
@click.argument("args", default="[]")
@click.option("--kwargs", "kwargs_json", default="{}", help="JSON object of keyword arguments.")
@click.option("--run-id", default=None)
@click.pass_context
def start(
    ctx: click.Context, workflow: str, args: str, kwargs_json: str, run_id: str | None
) -> None:
    try:
        positional, named = json.loads(args), json.loads(kwargs_json)
    except json.JSONDecodeError as exc:
        raise click.BadParameter(f"not valid JSON: {exc}") from None
    if not isinstance(positional, list) or not isinstance(named, dict):
        raise click.BadParameter("ARGS must be a JSON list and --kwargs a JSON object")
    try:
        handle = _durable(ctx).start(workflow, *positional, run_id=run_id, **named)
    except DurableError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(handle.run_id)


@durable.command(help="Cancel a run.")
@click.argument("run_id")
@click.option("--reason", default="")
@click.pass_context
def cancel(ctx: click.Context, run_id: str, reason: str) -> None:
    try:
        done = _durable(ctx).runtime.client.cancel_run(run_id, reason)
    except DurableError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo("cancel requested" if done else "run already finished or cancel already requested")


@durable.command(help="Continue a blocked run with the code deployed now.")
@click.argument("run_id")
@click.pass_context
def resume(ctx: click.Context, run_id: str) -> None:
    try:
        done = _durable(ctx).runtime.client.resume_run(run_id)
    except DurableError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo("resumed" if done else "run is not blocked; nothing to do")


@durable.command(help="Replay a run's log with the code deployed now (writes nothing).")
@click.argument("run_id")
@click.pass_context
def replay(ctx: click.Context, run_id: str) -> None:
    try:
        report = replay_run(_durable(ctx).runtime, run_id)
    except DurableError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"run {run_id} ({report.workflow}): {report.outcome}")
    if report.outcome == "diverged":
        click.echo(str(report.error))
    elif report.outcome == "waiting" and report.next_commands:
        click.echo("next: " + "; ".join(report.next_commands))
    if report.matches_record is False:
        click.echo("the replayed outcome differs from the recorded one")
    sys.exit(0 if report.ok else 1)
