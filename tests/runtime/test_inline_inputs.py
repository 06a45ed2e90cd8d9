"""What the log keeps of an inline step's input: the input itself up to ``inline_input_limit``
bytes, and always the argument hash that replay checks; a retrying step keeps its input."""

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
    return {e.cid: e for e in durable.history(run_id) if e.kind == ev.STEP_SCHEDULED}


def decoded_input(env: LocalEnvironment, run_id: str, entry: ev.Event) -> object:
    assert entry.payload is not None
    return env.runtime.codec.decode(entry.payload, Place(run_id, ev.STEP_SCHEDULED, entry.cid))


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
    big, small = scheduled(durable, handle.run_id).values()
    packed = env.runtime.codec.pack(((BIG,), {}))
    assert big.payload is None
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
    assert all(e.payload is None for e in scheduled(durable, handle.run_id).values())


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
    assert decoded_input(env, handle.run_id, entry) == ((BIG,), {})
