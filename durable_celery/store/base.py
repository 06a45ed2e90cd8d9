"""The event store protocol: everything the runtime needs from storage, and nothing more.

Two implementations pass one contract suite (``tests/contract``): :mod:`.redis` (the product,
real Redis >= 6.2 or fakeredis) and :mod:`.memory` (pure unit tests).

Vocabulary:

* *append-once*: an outcome (``step_completed``...) for a correlation id is appended at most once;
  the check and the append are one atomic operation.
* *fenced append*: new work is appended only by the holder of the run's orchestration lease.
* *wake flag*: at most one orchestrator pass is queued or running per run; whoever sets the flag
  (it was clear) must enqueue a pass; the pass clears it only when it has seen the whole log.
* *retention*: nothing expires while a run is live; a fenced append that finishes the run may
  give it a retention, after which the whole run (every per-run key) disappears at once.
* *external events*: global, per event key (not per run): a hook names the run waiting on the
  key, a buffer keeps events sent before anyone waited, dedupe ids drop resent events.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from ..errors import LeaseLost, RunNotFound
from ..replay.events import Event, NewEvent

__all__ = [
    "PassStart",
    "WaitFor",
    "TERMINAL_STATUSES",
    "EventStore",
    "RunRecord",
    "AppendResult",
    "OutcomeResult",
    "DueTimer",
]

#: Run statuses after which the run's log never grows again; only these start its retention.
TERMINAL_STATUSES = frozenset({"completed", "failed", "cancelled"})


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
    ``parked`` is True when the outcome of a step sent before its scheduling was recorded
    arrived first: it is kept aside (``entry_id`` is then "") and enters the log right after
    the step's ``step_scheduled`` entry, in the same script that appends that.
    """

    entry_id: str
    created: bool
    wake: bool
    parked: bool = False


@dataclass(frozen=True)
class WaitFor:
    """What would unblock a suspended workflow: ``all`` (``missing`` of ``cids`` still to come)
    or ``any`` of ``cids``. Outcomes of other ids are recorded without waking the run."""

    mode: str
    cids: tuple[str, ...]
    missing: int = 1


@dataclass(frozen=True)
class PassStart:
    """What :meth:`EventStore.begin_pass` found."""

    acquired: bool
    outbox: list[str] = field(default_factory=list)
    entries: list[Event] = field(default_factory=list)
    lease_ms: int = 0


@dataclass(frozen=True)
class AheadResult:
    """What :meth:`EventStore.record_ahead` did.

    ``begun``: the outcome is recorded and the caller holds the lease (a pass is running).
    ``finished``: the outcome and the scheduled entries are recorded, and the pass is over.
    ``continued``: as finished, but outcomes of the steps just scheduled were waiting (they
    finished before this script ran): they follow in ``promoted``, and the caller holds the
    lease to take them in. ``refused``: nothing was written; ``reason`` says why.
    """

    status: str
    promoted: list[Event] = field(default_factory=list)
    reason: str = ""


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

    #: The store's clock in ms, when reading it costs no round trip (the memory store's, which
    #: may be a test's virtual clock); None when it is a server's.
    local_now_ms: Callable[[], int] | None

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

    def read_last(self, run_id: str, count: int = 1) -> list[Event]:
        """The last ``count`` entries (fewer when the log is shorter), oldest first; [] when
        ``count`` < 1 or the run does not exist."""

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
        retention_ms: int | None = None,
    ) -> list[str]:
        """Append ``events`` only if ``token`` holds the lease (else raise LeaseLost, nothing
        written); renew the lease for the ttl it was acquired with. RunNotFound if no run.

        Outcome kinds (``OUTCOME_KINDS``) with a cid are recorded under their cid (append-once:
        an outcome already recorded raises nothing and is skipped; its existing id is returned
        in its place). ``status`` updates the run record; ``outbox`` lists step task descriptors
        that must be (re)sent until :meth:`finish_pass` clears them.

        ``retention_ms`` (positive, else ValueError) with a terminal ``status``
        (``TERMINAL_STATUSES``) makes the whole run expire that long after this append, in the
        same atomic step; with any other status it is ignored (a live run never expires).
        """

    def append_fenced_and_read(
        self,
        run_id: str,
        token: str,
        events: Sequence[NewEvent],
        *,
        after_id: str | None,
        known: int | None = None,
        status: str | None = None,
        outbox: Sequence[str] = (),
        retention_ms: int | None = None,
    ) -> tuple[list[str], list[Event]]:
        """:meth:`append_fenced`, then every entry after ``after_id`` (all when None): the ones
        just appended and any others appended meanwhile, in stream order. One atomic step (one
        round trip on Redis); LeaseLost/RunNotFound as :meth:`append_fenced`, nothing read.

        ``known``: how many entries the log holds up to ``after_id``, when the caller has read
        them all (None: not known). A log only grows, so when it still holds that many, nobody
        else appended and the store need not read (Redis: an XLEN instead of an XRANGE). A
        wrong count would hide others' entries; the memory store refuses one (ValueError)."""

    def append_and_finish(
        self,
        run_id: str,
        token: str,
        events: Sequence[NewEvent],
        *,
        after_id: str | None,
        known: int | None = None,
        waitfor: WaitFor | None,
    ) -> tuple[list[str], list[Event], bool]:
        """:meth:`append_fenced_and_read` (``known`` as there), then, in the same atomic step,
        :meth:`finish_pass` with ``waitfor`` when nothing but this batch arrived after
        ``after_id``. Returns the ids, the entries read, and whether the pass was finished (the
        lease is then released)."""

    def record_outcome(
        self,
        run_id: str,
        key: str,
        event: NewEvent,
        *,
        wake: bool = True,
        force: bool = False,
        identity: str | None = None,
    ) -> OutcomeResult:
        """Append-once under ``key``, and (``wake``) set the wake flag in the same round trip.
        Not fenced: any worker may record an outcome. RunNotFound when the run does not exist.

        When the run's last pass said what it waits for (``finish_pass(waitfor=...)``), only an
        outcome that meets it sets the flag; ``force`` (control entries) always does.

        ``identity`` (``<name>:<argument hash>``): the step (``event.cid``) was sent for that
        call before its scheduling was recorded. Until a ``step_scheduled`` entry for the cid is
        in, the outcome is parked (see OutcomeResult) and wakes nothing: the pass that sent the
        step appends it, or dies and the sweep re-drives the run, whose replay schedules the
        step again. When the cid is scheduled for another call (code deployed since replays
        differently), the outcome is dropped: ``created`` and ``parked`` are False."""

    def record_and_begin(
        self,
        run_id: str,
        key: str,
        event: NewEvent,
        token: str,
        ttl_ms: int,
        after_id: str | None,
        *,
        identity: str | None = None,
    ) -> tuple[OutcomeResult, PassStart | None]:
        """``record_outcome(wake=True, identity=identity)`` and, when that sets the wake flag,
        ``begin_pass`` in the same round trip: the recording worker then continues the run
        itself (one hop).

        The PassStart is None when the outcome did not wake the run; ``acquired`` is False when
        an expired pass's lease is still held (enqueue a pass instead)."""

    def record_ahead(
        self,
        run_id: str,
        key: str,
        outcome: Event,
        token: str,
        ttl_ms: int,
        after_id: str,
        *,
        identity: str | None = None,
        scheduled: Sequence[Event] = (),
        waitfor: WaitFor | None = None,
    ) -> AheadResult:
        """Record ``outcome`` under ``key`` at its own entry id, which the caller chose: it
        continued the run's live workflow with it before recording it (speculative
        continuation). Only when the run is exactly as the caller saw it: running, its last
        entry ``after_id``, the outcome not recorded, the call ``identity`` (if given) scheduled
        under the outcome's cid, no pass running and none queued. Otherwise ``refused`` and
        nothing is written.

        Without ``scheduled``: also take the lease for ``token`` and set the wake flag, as
        :meth:`record_and_begin` does (``begun``). With ``scheduled`` (``step_scheduled``
        entries with their chosen ids, after the outcome's; steps already sent): append them
        too, and finish the pass with ``waitfor`` as :meth:`append_and_finish` does
        (``finished``), or, when outcomes of those steps were parked, promote them and take the
        lease (``continued``). One atomic step, one round trip on Redis."""

    # -- orchestration ----------------------------------------------------------------------------
    def acquire_lease(self, run_id: str, token: str, ttl_ms: int) -> bool:
        """Take the lease for ``ttl_ms``; True also when ``token`` already held it (renewed)."""

    def begin_pass(self, run_id: str, token: str, ttl_ms: int, after_id: str | None) -> PassStart:
        """``acquire_lease``, ``pending_outbox`` and ``read_since(after_id)`` in one round trip.

        When another token holds the lease: ``acquired`` False and its remaining ``lease_ms``.
        """

    def read_step_input(
        self, run_id: str, outcome_key: str, entry_id: str
    ) -> tuple[str | None, Event | None]:
        """``outcome_id(outcome_key)`` and ``read_entry(entry_id)`` in one round trip."""

    def lease_ttl_ms(self, run_id: str) -> int:
        """Remaining lease time, 0 when free."""

    def lease_holder(self, run_id: str) -> str | None:
        """The token holding the lease, None when free (diagnostics)."""

    def finish_pass(
        self, run_id: str, token: str, last_id: str, waitfor: WaitFor | None = None
    ) -> bool:
        """If the log's last id is ``last_id``: clear the outbox and wake flag, release the lease,
        record ``waitfor`` (or clear it), return True. Else keep everything and return False (the
        caller must read and pass again). LeaseLost when ``token`` does not hold the lease."""

    def release_lease(self, run_id: str, token: str) -> None:
        """Release the lease if ``token`` holds it (compare-and-delete); else do nothing."""

    def claim_redelivery(self, run_id: str, idle_ms: int) -> bool:
        """True (once per idle period, whoever asks) when the run is running and nothing was
        recorded for it, nor claimed here, for ``idle_ms``: the caller then sends its pending
        steps again (a broker may lose a message a dying worker had taken)."""

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

    # -- external events (global keys, one key per operation) -------------------------------------
    # Event keys: non-empty strings of at most 1000 characters (ValueError otherwise); owners and
    # dedupe ids: non-empty strings; ttls: positive milliseconds.
    def register_hook(self, key: str, owner: str) -> str | None:
        """Claim ``key`` for ``owner`` (SET NX). None when claimed now or already owned by
        ``owner``; otherwise the current owner (the caller decides whether it is stale)."""

    def replace_hook(self, key: str, expected: str, owner: str) -> bool:
        """Compare-and-set: give ``key`` to ``owner`` only if ``expected`` holds it now."""

    def get_hook(self, key: str) -> str | None:
        """The owner of ``key``, None when unclaimed."""

    def delete_hook(self, key: str, owner: str) -> bool:
        """Compare-and-delete: remove the hook only if ``owner`` holds it; True if removed."""

    def push_buffered_event(self, key: str, blob: bytes, ttl_ms: int) -> None:
        """Keep ``blob`` for the next wait on ``key`` (FIFO) for ``ttl_ms``: an expired item is
        never returned, and the buffer itself goes once its last item has expired."""

    def claim_buffered_event(self, key: str, owner: str) -> bytes | None:
        """The oldest unexpired buffered payload, claimed for ``owner`` (None when there is
        none). It stays in the buffer, claimed, until :meth:`settle_buffered_event`: asked
        again, ``owner`` gets the same payload back (its pass died before recording it), and no
        other owner ever gets it. Atomic: two waiters never claim the same item. A claimed item
        still expires with its ttl."""

    def settle_buffered_event(self, key: str, owner: str) -> bool:
        """Remove the item ``owner`` claimed, once its outcome is recorded; False if none."""

    def claim_dedupe(self, key: str, dedupe_id: str, ttl_ms: int) -> bool:
        """True the first time; False while ``dedupe_id`` is remembered for ``key`` (``ttl_ms``
        after the claim that succeeded)."""

    def release_dedupe(self, key: str, dedupe_id: str) -> None:
        """Forget ``dedupe_id`` for ``key`` (e.g. when delivering the event failed)."""


# -- errors both stores raise the same way -------------------------------------------------------
def check_lease_args(token: str, ttl_ms: int) -> None:
    if not token:
        raise ValueError("a lease token must be a non-empty string")
    if ttl_ms <= 0:
        raise ValueError(f"a lease ttl must be positive, got {ttl_ms} ms")


def check_ttl(ttl_ms: int, what: str) -> int:
    if isinstance(ttl_ms, bool) or not isinstance(ttl_ms, int) or ttl_ms <= 0:
        raise ValueError(f"{what} must be a positive number of milliseconds, got {ttl_ms!r}")
    return ttl_ms


def check_owner(owner: str) -> str:
    if not isinstance(owner, str) or not owner:
        raise ValueError(f"a hook owner must be a non-empty string, got {owner!r}")
    return owner


def retention_for(status: str | None, retention_ms: int | None) -> int | None:
    """The retention a fenced append applies: only a terminal status starts it."""
    if retention_ms is None:
        return None
    check_ttl(retention_ms, "a run retention")
    return retention_ms if status in TERMINAL_STATUSES else None


def lease_lost(run_id: str) -> LeaseLost:
    return LeaseLost(
        f"run {run_id!r}: this pass no longer holds the orchestration lease (it expired or "
        "another orchestrator took it); nothing was written, stop this pass"
    )


def run_not_found(run_id: str) -> RunNotFound:
    return RunNotFound(f"no run {run_id!r} in the event store (never created, or deleted)")
