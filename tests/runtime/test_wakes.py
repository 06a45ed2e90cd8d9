"""Wakes: many outcomes landing together cost one orchestrator pass, not one each."""

from __future__ import annotations

from durable_celery import Durable, gather
from durable_celery.testing.local import LocalEnvironment

WIDTH = 10


def run_next(env: LocalEnvironment, kind: str, cid: str | None = None) -> None:
    """Run the first queued item of ``kind`` (for steps: of ``cid``) before anything else."""
    queue = env.dispatcher.queue
    item = next(i for i in queue if i[0] == kind and (cid is None or i[3] == cid))
    queue.remove(item)
    queue.appendleft(item)
    env.step_once()


def test_outcomes_of_a_fan_out_landing_together_queue_a_single_wake(durable: Durable) -> None:
    @durable.step
    def square(x: int) -> int:
        return x * x

    @durable.workflow
    def fan_out(n: int) -> list[int]:
        return gather(*(square.defer(i) for i in range(n)))

    env = LocalEnvironment(durable, step_execution="dispatch")
    handle = fan_out.start(WIDTH)
    env.step_once()  # the first pass dispatches all ten
    queue = env.dispatcher.queue
    assert [item[0] for item in queue] == ["step"] * WIDTH
    wakes, passes = env.dispatcher.wakes, env.passes

    for _ in range(WIDTH):
        env.step_once()

    assert env.dispatcher.wakes == wakes + 1
    assert [item[0] for item in queue] == ["wake"]
    env.step_once()
    assert env.passes == passes + 1  # one pass saw all ten outcomes
    assert handle.status() == "completed"
    assert handle.result(timeout=0) == [i * i for i in range(WIDTH)]
    assert not queue


def test_an_outcome_that_completes_what_the_run_waits_for_queues_a_pass(
    durable: Durable,
) -> None:
    @durable.step
    def square(x: int) -> int:
        return x * x

    @durable.workflow
    def fan_out() -> list[int]:
        return gather(square.defer(1), square.defer(2))

    env = LocalEnvironment(durable, step_execution="dispatch", live_workflows=False)
    handle = fan_out.start()
    env.step_once()
    wakes = env.dispatcher.wakes
    run_next(env, "step", "s1")  # s1 completes: the gather still needs s2, so no pass yet
    assert env.dispatcher.wakes == wakes
    run_next(env, "step", "s2")  # s2 completes: the gather can move: it must wake the run
    assert env.dispatcher.wakes == wakes + 1
    env.run_until_idle()
    assert handle.result(timeout=0) == [1, 4]


def test_a_duplicate_delivery_of_a_settled_step_does_not_run_it_or_record_it_again(
    durable: Durable,
) -> None:
    runs: list[int] = []

    @durable.step
    def once(x: int) -> int:
        runs.append(x)
        return x

    @durable.workflow
    def wf() -> int:
        return once(5)

    env = LocalEnvironment(durable, step_execution="dispatch")
    handle = wf.start()
    env.step_once()
    (item,) = env.dispatcher.queue
    env.step_once()  # the step runs; its outcome wakes the run
    env.step_once()  # the pass completes the run
    assert handle.status() == "completed"
    log = [e.entry_id for e in durable.history(handle.run_id)]

    env.redeliver(item)  # the broker delivers the task again, and says so
    env.run_until_idle()
    assert runs == [5]
    assert [e.entry_id for e in durable.history(handle.run_id)] == log
    assert handle.result(timeout=0) == 5

    # A duplicate the broker cannot tell (the message carries the step's input): the step runs
    # again (at least once), and its outcome is still recorded once.
    env.dispatcher.queue.append(item)
    env.run_until_idle()
    assert runs == [5, 5]
    assert [e.entry_id for e in durable.history(handle.run_id)] == log
    assert handle.result(timeout=0) == 5
