"""Every Redis key name durable_celery uses, in one place.

Per-run keys embed the run id as a Redis Cluster hash tag (``{run_id}``), so all of a run's keys
live in one slot and every per-run Lua script is single-slot. The two global keys (the run index
and the timer set) are never touched by a per-run script, so they may live on any shard.

Layout for prefix ``durable`` and run ``r1``::

    durable:{r1}:log       stream   the run's event log (never trimmed)
    durable:{r1}:meta      hash     workflow, status, created_ms, updated_ms + extra fields
    durable:{r1}:outcomes  hash     append-once key -> entry id
    durable:{r1}:lease     string   "<ttl_ms>:<token>" of the orchestrator holding the run (PX ttl)
    durable:{r1}:wake      string   set while a pass is queued or running
    durable:{r1}:outbox    set      step task descriptors to (re)send until the pass finishes
    durable:runs           zset     run id -> created ms (listing)
    durable:timers         zset     timer member -> deadline ms (Redis server clock)
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "MAX_RUN_ID_LENGTH",
    "RunKeys",
    "run_keys",
    "runs_index",
    "timers",
    "validate_prefix",
    "validate_run_id",
]

MAX_RUN_ID_LENGTH = 200


def validate_run_id(run_id: str) -> str:
    """Return ``run_id`` if it can name a run, else raise ``ValueError`` saying why.

    Braces are refused because a run id sits inside a hash tag: ``{a}b}`` would put the run's
    keys in the slot of ``a`` for some keys and break single-slot scripts.
    """
    if not isinstance(run_id, str) or not run_id:
        raise ValueError(f"run id must be a non-empty string, got {run_id!r}")
    if len(run_id) > MAX_RUN_ID_LENGTH:
        raise ValueError(
            f"run id is {len(run_id)} characters long; use at most {MAX_RUN_ID_LENGTH}"
        )
    if "{" in run_id or "}" in run_id:
        raise ValueError(f"run id {run_id!r} must not contain '{{' or '}}' (Redis hash tags)")
    return run_id


def validate_prefix(prefix: str) -> str:
    """Return ``prefix`` if usable as a key prefix, else raise ``ValueError``."""
    if not isinstance(prefix, str) or not prefix:
        raise ValueError(f"key prefix must be a non-empty string, got {prefix!r}")
    if "{" in prefix or "}" in prefix:
        # A tag in the prefix would pull every run into one slot.
        raise ValueError(f"key prefix {prefix!r} must not contain '{{' or '}}'")
    return prefix


@dataclass(frozen=True, slots=True)
class RunKeys:
    """The keys of one run (all in one cluster slot)."""

    log: str
    meta: str
    outcomes: str
    lease: str
    wake: str
    outbox: str

    def all(self) -> tuple[str, ...]:
        return (self.log, self.meta, self.outcomes, self.lease, self.wake, self.outbox)


def run_keys(prefix: str, run_id: str) -> RunKeys:
    validate_run_id(run_id)
    base = f"{prefix}:{{{run_id}}}"
    return RunKeys(
        log=f"{base}:log",
        meta=f"{base}:meta",
        outcomes=f"{base}:outcomes",
        lease=f"{base}:lease",
        wake=f"{base}:wake",
        outbox=f"{base}:outbox",
    )


def runs_index(prefix: str) -> str:
    """Global: run id -> created ms, for listing newest first."""
    return f"{prefix}:runs"


def timers(prefix: str) -> str:
    """Global: timer member -> deadline ms on the Redis server clock."""
    return f"{prefix}:timers"
