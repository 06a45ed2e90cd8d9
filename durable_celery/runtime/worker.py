"""A dispatched step attempt, as run by its Celery task."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from ..codec import Place
from ..errors import DecodingError
from ..replay import events as ev
from ..workflow.step import StepDefinition
from .steps import retry_key, run_attempt

if TYPE_CHECKING:
    from .core import Runtime

__all__ = ["StepWorker"]

log = logging.getLogger("durable_celery.steps")


class StepWorker:
    def __init__(self, runtime: Runtime) -> None:
        self.rt = runtime

    def execute(
        self,
        step_name: str,
        run_id: str,
        cid: str,
        entry_id: str,
        attempt: int,
        payload: bytes | None = None,
        redelivered: bool = False,
        identity: str | None = None,
    ) -> str:
        """Run one attempt; record its outcome once; wake the run. Returns what happened.

        ``payload``: the input, sent with the message before the pass recorded the step
        (``entry_id`` is then "", ``identity`` names the call): nothing is read first, and the
        outcome waits until the step's scheduling is in (see ``record_outcome``). A message the
        broker says it delivers again (``redelivered``) is checked first, so a settled step does
        not run twice; a duplicate the broker cannot tell runs again, and its outcome is still
        recorded once.
        """
        rt = self.rt
        queue: str | None = None
        if payload is not None and redelivered and rt.store.outcome_id(run_id, cid) is not None:
            rt.dispatcher.wake(run_id)  # see below
            return "duplicate"
        if payload is None:
            recorded_id, scheduled = rt.store.read_step_input(run_id, cid, entry_id)
            if recorded_id is not None:
                # A redelivery: the first delivery may have died between recording and waking
                # the run, leaving the wake flag set with no pass queued. An extra pass is cheap.
                rt.dispatcher.wake(run_id)
                return "duplicate"
            if scheduled is None or scheduled.kind != ev.STEP_SCHEDULED or scheduled.cid != cid:
                log.warning(
                    "run %s: step %s (%s) has no scheduled entry %s",
                    run_id,
                    step_name,
                    cid,
                    entry_id,
                )
                return "missing"
            payload, entry_id = scheduled.payload or b"", scheduled.entry_id
            queue = scheduled.meta.get("q")
        early = not entry_id
        # The call this step was sent for; a message without one names no call, so its outcome
        # can only be parked, never promoted.
        sent_for = (identity or "?") if early else None
        step = rt.registry.step(step_name)
        try:
            args, kwargs = rt.codec.decode(payload, Place(run_id, ev.STEP_SCHEDULED, cid))
        except DecodingError:
            # This worker cannot read the input (e.g. its keyring lacks the key): try the same
            # attempt again later rather than lose the step; the log stays as it is.
            delay = rt.config.lease_timeout
            rt.timers.schedule_retry(step.name, run_id, cid, attempt, delay, entry_id, queue)
            raise
        if early and step.route is not None:
            queue = step.route(args, kwargs) or None  # the "q" its scheduled entry records
        result = run_attempt(
            step, tuple(args), dict(kwargs), run_id=run_id, cid=cid, attempt=attempt, codec=rt.codec
        )
        if result.settled:
            assert result.outcome is not None
            if self._one_hop(step):
                if rt.orchestrator.run_ahead(run_id, cid, result.outcome, sent_for):
                    return "recorded"  # with what the run did next, in one round trip
                # Record, and when that wakes the run take its lease, in one round trip; then
                # continue the run here instead of a second broker hop.
                token, ttl_ms = rt.orchestrator.new_token()
                after = rt.events.last_id(run_id)
                recorded, start = rt.store.record_and_begin(
                    run_id, cid, result.outcome, token, ttl_ms, after, identity=sent_for
                )
                if start is not None:
                    report = rt.orchestrator.run_started(run_id, token, after, start)
                    if report.status == "busy":
                        rt.dispatcher.wake(run_id, countdown=report.retry_after)
            else:
                recorded = rt.store.record_outcome(
                    run_id, cid, result.outcome, wake=True, identity=sent_for
                )
                if recorded.wake:
                    rt.dispatcher.wake(run_id)
            if early and not recorded.created:
                if recorded.entry_id:
                    rt.dispatcher.wake(run_id)  # a redelivery: see the read above
                else:
                    log.warning(
                        "run %s: step %s (%s) was sent for a call the run no longer "
                        "makes under that id; its outcome is dropped",
                        run_id,
                        step_name,
                        cid,
                    )
                    return "dropped"
            return "recorded" if recorded.created else "duplicate"
        assert result.retrying is not None
        # Timer first: a crash between the two leaves a retry without its log line, never a
        # log line without its retry.
        # entry_id "" (sent first): the timer finds the entry when it fires.
        rt.timers.schedule_retry(step.name, run_id, cid, attempt + 1, result.delay, entry_id, queue)
        rt.store.record_outcome(
            run_id, retry_key(cid, attempt), result.retrying, wake=False, identity=sent_for
        )
        return "retrying"

    def _one_hop(self, step: StepDefinition[Any, Any]) -> bool:
        """Whether this worker continues the run after recording ``step``'s outcome.

        Not for steps with time limits (Celery would count the continuation against them), nor
        when orchestration has a queue of its own.
        """
        config = self.rt.config
        limited = any(k in step.task_options for k in ("time_limit", "soft_time_limit"))
        return config.one_hop and not config.orchestrator_queue and not limited
