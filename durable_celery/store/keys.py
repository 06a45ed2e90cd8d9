"""Every Redis key name durable_celery uses, in one place.

Per-run keys embed the run id as a Redis Cluster hash tag (``{run_id}``), so all of a run's keys
live in one slot and every per-run Lua script is single-slot. The global keys (the run index, the
timer set, and the external-event keys) are never touched by a per-run script, and each
external-event operation touches only its own key, so they may live on any shard.

Layout for prefix ``durable`` and run ``r1``::

    durable:{r1}:log       stream   the run's event log (never trimmed)
    durable:{r1}:meta      hash     workflow, status, created_ms, updated_ms + extra fields
    durable:{r1}:outcomes  hash     append-once keys: "<cid>" -> the outcome's entry id; for a step
                                    not settled in the append that scheduled it, also ">cid" ->
                                    its step_scheduled entry id, "=cid" -> the call sent as cid;
                                    "#table" keeps it a hash table (see create_run.lua)
    durable:{r1}:lease     string   "<ttl_ms>:<token>" of the orchestrator holding the run (PX ttl)
    durable:{r1}:wake      string   set while a pass is queued or running
    durable:{r1}:outbox    set      step task descriptors to (re)send until the pass finishes
    durable:{r1}:waitfor   hash     what would unblock the suspended workflow (wake coalescing)
    durable:{r1}:early     stream   outcomes of steps sent before their scheduling was recorded
    durable:{r1}:payloads  hash     large payloads kept beside the log: reference -> bytes
    durable:runs           zset     run id -> created ms (listing)
    durable:timers         zset     timer member -> deadline ms (Redis server clock)
    durable:hook:<key>     string   owner (a run) waiting for external events on <key>
    durable:evbuf:<key>    list     "<expires_ms>:<payload>" events sent to <key> before a wait
    durable:dedupe:<n>:<key>:<id>   string   a dedupe id seen for <key> (n = len(key), PX ttl)

A finished run's keys expire together after its retention (see ``append_fenced``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = [
    "MAX_EVENT_KEY_LENGTH",
    "MAX_RUN_ID_LENGTH",
    "RunKeys",
    "dedupe",
    "event_buffer",
    "hook",
    "run_keys",
    "runs_index",
    "timers",
    "validate_event_key",
    "validate_prefix",
    "validate_run_id",
]

MAX_RUN_ID_LENGTH = 200
MAX_EVENT_KEY_LENGTH = 1000


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
    waitfor: str
    early: str
    payloads: str
    #: KEYS of the scripts that write under the run's lease (append_fenced, record_ahead),
    #: encoded once: hiredis would encode these nine on every call of every step (1 us).
    fenced: tuple[bytes, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        names = (
            self.lease,
            self.log,
            self.meta,
            self.outcomes,
            self.outbox,
            self.wake,
            self.waitfor,
            self.early,
            self.payloads,
        )
        object.__setattr__(self, "fenced", tuple(name.encode() for name in names))

    def all(self) -> tuple[str, ...]:
        return (
            self.log,
            self.meta,
            self.outcomes,
            self.lease,
            self.wake,
            self.outbox,
            self.waitfor,
            self.early,
            self.payloads,
        )


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
        waitfor=f"{base}:waitfor",
        early=f"{base}:early",
        payloads=f"{base}:payloads",
    )


def runs_index(prefix: str) -> str:
    """Global: run id -> created ms, for listing newest first."""
    return f"{prefix}:runs"


def timers(prefix: str) -> str:
    """Global: timer member -> deadline ms on the Redis server clock."""
    return f"{prefix}:timers"


def validate_event_key(key: str) -> str:
    """Return ``key`` if it can name an external event, else raise ``ValueError`` saying why.

    Any non-empty string up to 1000 characters: no external-event script touches two keys, so
    braces (hash tags) in it cannot split an operation across slots.
    """
    if not isinstance(key, str) or not key:
        raise ValueError(f"event key must be a non-empty string, got {key!r}")
    if len(key) > MAX_EVENT_KEY_LENGTH:
        raise ValueError(
            f"event key is {len(key)} characters long; use at most {MAX_EVENT_KEY_LENGTH}"
        )
    return key


def hook(prefix: str, key: str) -> str:
    """Global: who waits for external events on ``key``."""
    return f"{prefix}:hook:{validate_event_key(key)}"


def event_buffer(prefix: str, key: str) -> str:
    """Global: events sent to ``key`` while nobody waited, oldest first."""
    return f"{prefix}:evbuf:{validate_event_key(key)}"


def dedupe(prefix: str, key: str, dedupe_id: str) -> str:
    """Global: remembers ``dedupe_id`` for ``key``.

    The key's length comes first because both parts are arbitrary: without it, key ``a:b`` with
    id ``c`` and key ``a`` with id ``b:c`` would share one Redis key.
    """
    validate_event_key(key)
    if not isinstance(dedupe_id, str) or not dedupe_id:
        raise ValueError(f"dedupe id must be a non-empty string, got {dedupe_id!r}")
    return f"{prefix}:dedupe:{len(key)}:{key}:{dedupe_id}"
