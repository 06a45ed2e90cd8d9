"""The event store protocol: everything the runtime needs from storage, and nothing more.

Two implementations pass one contract suite (``tests/contract``): :mod:`.redis` (the product,
real Redis >= 6.2 or fakeredis) and :mod:`.memory` (pure unit tests).

Vocabulary:

* *append-once*: an outcome (``step_completed``...) for a correlation id is appended at most once;
  the check and the append are one atomic operation.
* *fenced append*: new work is appended only by the holder of the run's orchestration lease.
* *wake flag*: at most one orchestrator pass is queued or running per run; whoever sets the flag
  (it was clear) must enqueue a pass; the pass clears it only when it has seen the whole log.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from ..errors import LeaseLost, RunNotFound
from ..replay.events import Event, NewEvent

__all__ = ["EventStore", "RunRecord", "AppendResult", "OutcomeResult", "DueTimer"]


@dataclass(frozen=True)
class RunRecord:
    """A run's metadata (a small hash beside its log)."""

    run_id: str
    workflow: str
    status: str  # running | completed | failed | cancelled | blocked
    created_ms: int
    updated_ms: int
    extra: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class AppendResult:
    entry_ids: list[str]


@dataclass(frozen=True)
class OutcomeResult:
    """Result of an append-once.

    ``created`` is False when the key was already recorded (``entry_id`` is then the existing one).
    ``wake`` is True when the caller set the run's wake flag and so must enqueue a pass.
    """

    entry_id: str
    created: bool
    wake: bool


@dataclass(frozen=True)
class DueTimer:
    member: str  # opaque member, pass back to remove_timer
    kind: str  # "retry" | "timer" | ...
    run_id: str
    cid: str
    data: dict[str, Any]


class EventStore(Protocol):
    """What the runtime needs from storage. Run ids: non-empty, at most 200 characters, no braces
    (``ValueError`` otherwise, see :func:`.keys.validate_run_id`)."""

    # -- runs -------------------------------------------------------------------------------------
    def create_run(
        self, run_id: str, workflow: str, started: NewEvent, extra: dict[str, str]
    ) -> bool:
        """Create the run with its ``run_started`` entry (status ``running``) and set its wake
        flag. False if it exists (nothing changes). ``extra`` fields must not be named like the
        record's own (workflow, status, created_ms, updated_ms)."""

    def get_run(self, run_id: str) -> RunRecord | None: ...

    def list_runs(self, status: str | None = None, limit: int = 100) -> list[RunRecord]:
        """Newest first (by created_ms, then run id), optionally only runs with ``status``."""

    def set_status(self, run_id: str, status: str) -> None:
        """Set the run's status and ``updated_ms``; RunNotFound when it does not exist."""

    def delete_run(self, run_id: str) -> bool:
        """Delete the run whole (log, record, outcomes, lease, wake flag, outbox, index entry).
        True if anything existed. Its pending timers stay and fire into RunNotFound."""

    # -- the log ----------------------------------------------------------------------------------
    def read_since(self, run_id: str, after_id: str | None) -> list[Event]:
        """Entries strictly after ``after_id`` (all when None), in stream order."""

    def read_blocking(self, run_id: str, after_id: str | None, timeout_ms: int) -> list[Event]:
        """:meth:`read_since`, waiting up to ``timeout_ms`` for entries to arrive ([] then)."""

    def read_entry(self, run_id: str, entry_id: str) -> Event | None: ...

    def outcome_id(self, run_id: str, key: str) -> str | None:
        """The entry id recorded under an append-once key, if any."""

    def append_fenced(
        self,
        run_id: str,
        token: str,
        events: Sequence[NewEvent],
        *,
        status: str | None = None,
        outbox: Sequence[str] = (),
    ) -> list[str]:
        """Append ``events`` only if ``token`` holds the lease (else raise LeaseLost, nothing
        written); renew the lease for the ttl it was acquired with. RunNotFound if no run.

        Outcome kinds (``OUTCOME_KINDS``) with a cid are recorded under their cid (append-once:
        an outcome already recorded raises nothing and is skipped; its existing id is returned
        in its place). ``status`` updates the run record; ``outbox`` lists step task descriptors
        that must be (re)sent until :meth:`finish_pass` clears them.
        """

    def record_outcome(
        self, run_id: str, key: str, event: NewEvent, *, wake: bool = True
    ) -> OutcomeResult:
        """Append-once under ``key``, and (``wake``) set the wake flag in the same round trip.
        Not fenced: any worker may record an outcome. RunNotFound when the run does not exist."""

    # -- orchestration ----------------------------------------------------------------------------
    def acquire_lease(self, run_id: str, token: str, ttl_ms: int) -> bool:
        """Take the lease for ``ttl_ms``; True also when ``token`` already held it (renewed)."""

    def lease_ttl_ms(self, run_id: str) -> int:
        """Remaining lease time, 0 when free."""

    def lease_holder(self, run_id: str) -> str | None:
        """The token holding the lease, None when free (diagnostics)."""

    def finish_pass(self, run_id: str, token: str, last_id: str) -> bool:
        """If the log's last id is ``last_id``: clear the outbox and wake flag, release the lease,
        return True. Else keep everything and return False (the caller must read and pass again).
        LeaseLost when ``token`` does not hold the lease (nothing cleared)."""

    def release_lease(self, run_id: str, token: str) -> None:
        """Release the lease if ``token`` holds it (compare-and-delete); else do nothing."""

    def request_wake(self, run_id: str) -> bool:
        """Set the wake flag; True when it was clear (the caller must enqueue a pass).
        RunNotFound when the run does not exist."""

    def wake_pending(self, run_id: str) -> bool:
        """Whether the wake flag is set (a pass is queued or running)."""

    def pending_outbox(self, run_id: str) -> list[str]:
        """Outbox members, sorted."""

    # -- timers (global, server-time deadlines) ---------------------------------------------------
    def add_timer(
        self, kind: str, run_id: str, cid: str, delay_ms: int, data: dict[str, Any]
    ) -> int:
        """Register a timer due ``delay_ms`` after the store's clock; return its deadline (ms).
        A timer is identified by (kind, run_id, cid, data), ``data`` JSON-serialisable: adding
        the same one again keeps its first deadline."""

    def claim_due_timers(self, claim_ms: int, limit: int = 100) -> list[DueTimer]:
        """Due timers, each hidden from other claimers for ``claim_ms`` (a crashed claimer's
        timer comes back). Fire idempotently first, then :meth:`remove_timer`."""

    def remove_timer(self, member: str) -> None: ...

    def now_ms(self) -> int:
        """The store's clock (Redis server time), which every worker shares."""


# -- errors both stores raise the same way -------------------------------------------------------
def check_lease_args(token: str, ttl_ms: int) -> None:
    if not token:
        raise ValueError("a lease token must be a non-empty string")
    if ttl_ms <= 0:
        raise ValueError(f"a lease ttl must be positive, got {ttl_ms} ms")


def lease_lost(run_id: str) -> LeaseLost:
    return LeaseLost(
        f"run {run_id!r}: this pass no longer holds the orchestration lease (it expired or "
        "another orchestrator took it); nothing was written, stop this pass"
    )


def run_not_found(run_id: str) -> RunNotFound:
    return RunNotFound(f"no run {run_id!r} in the event store (never created, or deleted)")
