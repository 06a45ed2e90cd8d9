"""gather() and durable.map(): fan-out dispatched in one pass, fan-in in argument order, the
first failure in log order raised, every other outcome kept."""

from __future__ import annotations

import pytest

from durable_celery import Durable, gather
from durable_celery.replay import events as ev
from durable_celery.testing import LocalEnvironment, replay_history

from .support import of_kind, outcomes_per_cid, queued_steps, run_steps


class Broken(Exception):
    pass


class AlsoBroken(Exception):
    pass


@pytest.mark.parametrize("mode", ["dispatch", "auto"])
def test_every_branch_of_a_gather_is_queued_before_any_of_them_completes(
    durable: Durable, mode: str
) -> None:
    @durable.step
    def square(x: int) -> int:
        return x * x

    @durable.workflow
    def fan_out(n: int) -> list[int]:
        return gather(*(square.defer(i) for i in range(n)))

    env = LocalEnvironment(durable, step_execution=mode)
    handle = fan_out.start(5)
    env.step_once()  # one pass

    history = durable.history(handle.run_id)
    assert of_kind(history, ev.STEP_SCHEDULED) == ["s1", "s2", "s3", "s4", "s5"]
    assert of_kind(history, ev.STEP_COMPLETED) == []  # nothing ran in the orchestrator
    assert queued_steps(env) == ["s1", "s2", "s3", "s4", "s5"]  # five tasks, for five workers
    assert env.dispatcher.sent_steps == 5
    assert env.result(handle) == [0, 1, 4, 9, 16]


@pytest.mark.parametrize("order", [["s4", "s2", "s3", "s1"], ["s1", "s2", "s3", "s4"]])
def test_gather_returns_results_in_argument_order_not_completion_order(
    durable: Durable, order: list[str]
) -> None:
    @durable.step
    def tag(name: str) -> str:
        return f"<{name}>"

    @durable.step
    def count(text: str) -> int:
        return len(text)

    @durable.workflow
    def wf() -> list[object]:
        return gather(tag.defer("a"), count.defer("xyz"), tag.defer("b"), count.defer(""))

    env = LocalEnvironment(durable, step_execution="dispatch")
    handle = wf.start()
    env.step_once()
    run_steps(env, order)
    assert of_kind(durable.history(handle.run_id), ev.STEP_COMPLETED) == order
    assert env.result(handle) == ["<a>", 3, "<b>", 0]


def test_durable_map_runs_a_step_over_items_in_parallel_with_results_in_input_order(
    durable: Durable,
) -> None:
    @durable.step
    def shout(word: str) -> str:
        return word.upper()

    @durable.workflow
    def wf(words: list[str]) -> list[str]:
        return durable.map(shout, (w for w in words))  # any iterable, a generator too

    env = LocalEnvironment(durable, step_execution="dispatch")
    handle = wf.start(["x", "yy", "zzz"])
    env.step_once()
    assert queued_steps(env) == ["s1", "s2", "s3"]
    run_steps(env, ["s3", "s1", "s2"])
    assert env.result(handle) == ["X", "YY", "ZZZ"]


def test_durable_map_over_nothing_returns_an_empty_list_at_once(durable: Durable) -> None:
    @durable.step
    def shout(word: str) -> str:
        return word.upper()

    @durable.workflow
    def wf() -> list[str]:
        return durable.map(shout, [])

    env = LocalEnvironment(durable, step_execution="dispatch")
    assert env.result(wf.start()) == []
    assert env.passes == 1 and env.dispatcher.sent_steps == 0


@pytest.mark.parametrize(
    ("order", "raised"),
    [
        (["s1", "s3", "s2"], Broken),
        (["s3", "s1", "s2"], AlsoBroken),
        (["s2", "s3", "s1"], AlsoBroken),
    ],
)
def test_a_gather_whose_branches_fail_after_their_retries_raises_the_first_failure_in_the_log(
    durable: Durable, order: list[str], raised: type[Exception]
) -> None:
    @durable.step(retries=2, backoff=0)
    def broken(n: int) -> None:
        raise Broken(f"broken {n}")

    @durable.step(retries=2, backoff=0)
    def also_broken() -> None:
        raise AlsoBroken("also")

    @durable.step
    def fine() -> str:
        return "ok"

    @durable.workflow
    def wf() -> str:
        try:
            gather(broken.defer(1), fine.defer(), also_broken.defer())
        except (Broken, AlsoBroken) as exc:
            return type(exc).__name__
        return "no error"

    env = LocalEnvironment(durable, step_execution="dispatch")
    handle = wf.start()
    env.step_once()
    for cid in order:  # each branch runs all its attempts (retries fire at once: backoff=0)
        while cid in queued_steps(env) or env.runtime.timers.fire_due():
            if cid in queued_steps(env):
                run_steps(env, [cid])
    assert env.result(handle) == raised.__name__

    history = durable.history(handle.run_id)
    settled = [(e.kind, e.cid) for e in history if e.kind in ev.OUTCOME_KINDS]
    kinds = {"s1": ev.STEP_FAILED, "s2": ev.STEP_COMPLETED, "s3": ev.STEP_FAILED}
    assert settled == [(kinds[cid], cid) for cid in order]  # every outcome kept, once each
    retried = [e.cid for e in history if e.kind == ev.STEP_RETRYING]
    assert sorted(retried) == ["s1", "s1", "s3", "s3"]  # two retries each, then the failure


def test_an_uncaught_gather_failure_fails_the_run_and_replays_to_the_same_error(
    durable: Durable,
) -> None:
    @durable.step(retries=0)
    def broken(n: int) -> int:
        raise Broken(f"broken {n}")

    @durable.step
    def fine(n: int) -> int:
        return n

    @durable.workflow
    def wf() -> list[int]:
        return gather(fine.defer(1), broken.defer(2), broken.defer(3), fine.defer(4))

    env = LocalEnvironment(durable, step_execution="dispatch")
    handle = wf.start()
    env.step_once()
    run_steps(env, ["s4", "s3", "s1", "s2"])
    with pytest.raises(Broken, match="broken 3"):
        env.result(handle)
    history = durable.history(handle.run_id)
    assert outcomes_per_cid(history) == {"s1": 1, "s2": 1, "s3": 1, "s4": 1}
    report = replay_history(history, durable.registry, env.runtime.codec, handle.run_id)
    assert report.outcome == "failed" and str(report.error) == "broken 3"
    assert report.matches_record is True and report.next_commands == []


def test_a_gather_suspends_until_its_last_branch_without_a_pass_per_branch(
    durable: Durable,
) -> None:
    @durable.step
    def ident(x: int) -> int:
        return x

    @durable.workflow
    def wf() -> int:
        return sum(gather(ident.defer(1), ident.defer(2), ident.defer(3)))

    env = LocalEnvironment(durable, step_execution="dispatch", live_workflows=False)
    handle = wf.start()
    env.step_once()
    wakes = env.dispatcher.wakes
    run_steps(env, ["s2"])  # two still outstanding: recorded without waking the run
    assert env.dispatcher.wakes == wakes
    assert not [i for i in env.dispatcher.queue if i[0] == "wake"]
    assert handle.status() == "running"
    assert sorted(queued_steps(env)) == ["s1", "s3"]
    assert env.dispatcher.sent_steps == 3  # the replay did not send anything again
    assert env.result(handle) == 6
