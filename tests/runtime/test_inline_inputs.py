"""What the log keeps of an inline step's input: the input itself up to ``inline_input_limit``
bytes, and always the argument hash that replay checks; a retrying step keeps its input.

A finished inline step is one entry, its outcome, which also records the call (its meta holds
the argument hash ``h``, and the input as ``in``)."""

from __future__ import annotations

import pytest

from durable_celery import Durable, NondeterminismError
from durable_celery.codec import Place
from durable_celery.replay import events as ev
from durable_celery.runtime.replayer import replay_run
from durable_celery.testing.local import LocalEnvironment

BIG = "x" * 5000
SMALL = "hi"


def scheduled(durable: Durable, run_id: str) -> dict[str, ev.Event]:
    """The entries that record each step's call, by cid."""
    return {e.cid: e for e in durable.history(run_id) if ev.records_call(e)}


def decoded_input(env: LocalEnvironment, run_id: str, entry: ev.Event) -> object:
    blob = ev.recorded_input(entry)
    assert blob is not None
    return env.runtime.codec.decode(blob, Place(run_id, ev.STEP_SCHEDULED, entry.cid))


def echo_workflow(durable: Durable) -> object:
    @durable.step(execution="inline", name="echo")
    def echo(text: str) -> str:
        return text

    @durable.workflow(name="echoes")
    def echoes(big: str, small: str) -> int:
        return len(echo(big)) + len(echo(small))

    return echoes


def test_a_finished_inline_step_stores_a_large_input_as_its_hash_and_size(
    durable: Durable,
) -> None:
    echoes = echo_workflow(durable)
    env = LocalEnvironment(durable)
    handle = echoes.start(BIG, SMALL)  # type: ignore[attr-defined]
    assert env.result(handle) == len(BIG) + len(SMALL)
    assert [e.kind for e in durable.history(handle.run_id)] == [
        ev.RUN_STARTED,
        ev.STEP_COMPLETED,
        ev.STEP_COMPLETED,
        ev.RUN_COMPLETED,
    ]
    big, small = scheduled(durable, handle.run_id).values()
    packed = env.runtime.codec.pack(((BIG,), {}))
    assert ev.recorded_input(big) is None
    assert big.meta["input_not_stored"] == len(packed)
    assert big.meta["h"] == env.runtime.codec.fingerprint(((BIG,), {}))
    assert "input_not_stored" not in small.meta
    assert decoded_input(env, handle.run_id, small) == ((SMALL,), {})


@pytest.mark.parametrize("limit", [-1, 10_000])
def test_inline_inputs_up_to_the_limit_are_stored(durable: Durable, limit: int) -> None:
    echoes = echo_workflow(durable)
    env = LocalEnvironment(durable, inline_input_limit=limit)
    handle = echoes.start(BIG, SMALL)  # type: ignore[attr-defined]
    assert env.result(handle) == len(BIG) + len(SMALL)
    big, small = scheduled(durable, handle.run_id).values()
    assert "input_not_stored" not in big.meta
    assert decoded_input(env, handle.run_id, big) == ((BIG,), {})
    assert decoded_input(env, handle.run_id, small) == ((SMALL,), {})


def test_with_limit_zero_no_finished_inline_step_stores_its_input(durable: Durable) -> None:
    echoes = echo_workflow(durable)
    env = LocalEnvironment(durable, inline_input_limit=0)
    handle = echoes.start(BIG, SMALL)  # type: ignore[attr-defined]
    assert env.result(handle) == len(BIG) + len(SMALL)
    calls = scheduled(durable, handle.run_id).values()
    assert len(calls) == 2
    assert all(ev.recorded_input(e) is None and "input_not_stored" in e.meta for e in calls)


def test_replay_still_checks_an_unstored_input_against_its_hash(durable: Durable) -> None:
    echoes = echo_workflow(durable)
    env = LocalEnvironment(durable)
    handle = echoes.start(BIG, SMALL)  # type: ignore[attr-defined]
    env.result(handle)
    assert replay_run(env.runtime, handle.run_id).outcome == "completed"

    # The same run, replayed by code that passes another large value to the first step.
    other = Durable(durable.app.__class__("t2", broker="memory://"))

    @other.step(execution="inline", name="echo")
    def echo(text: str) -> str:
        return text

    @other.workflow(name="echoes")
    def echoes_changed(big: str, small: str) -> int:
        return len(echo(big + "!")) + len(echo(small))

    changed = LocalEnvironment(other, store=env.store)
    report = replay_run(changed.runtime, handle.run_id)
    assert report.outcome == "diverged"
    assert isinstance(report.error, NondeterminismError)


def test_a_retrying_inline_step_keeps_its_input_for_the_next_attempt(durable: Durable) -> None:
    attempts: list[int] = []

    @durable.step(execution="inline", retries=1, backoff=0)
    def flaky(text: str) -> int:
        attempts.append(len(text))
        if len(attempts) == 1:
            raise ConnectionError("once")
        return len(text)

    @durable.workflow
    def wf(text: str) -> int:
        return flaky(text)

    env = LocalEnvironment(durable)
    handle = wf.start(BIG)
    assert env.result(handle) == len(BIG)
    assert attempts == [len(BIG), len(BIG)]  # the second attempt read the input from the log
    (entry,) = scheduled(durable, handle.run_id).values()
    assert entry.kind == ev.STEP_SCHEDULED  # not settled in its pass: recorded as dispatched
    assert decoded_input(env, handle.run_id, entry) == ((BIG,), {})


def test_show_prints_an_inline_steps_input_and_result_from_its_one_entry(
    durable: Durable,
) -> None:
    from types import SimpleNamespace

    from click.testing import CliRunner

    from durable_celery.cli import durable as durable_cli

    echoes = echo_workflow(durable)
    env = LocalEnvironment(durable)
    handle = echoes.start(BIG[:40], SMALL)  # type: ignore[attr-defined]
    env.result(handle)
    shown = CliRunner().invoke(
        durable_cli, ["show", handle.run_id, "--payloads"], obj=SimpleNamespace(app=durable.app)
    )
    assert shown.exit_code == 0, shown.output
    (line,) = [row for row in shown.output.splitlines() if " s2 " in row]
    assert ev.STEP_COMPLETED in line
    assert "input=(('hi',), {})" in line and "value='hi'" in line
    assert " in=" not in line  # the sealed bytes are not printed raw
