"""Bad input at start() is refused with a clear error before anything is written."""

from __future__ import annotations

import inspect
import re
from typing import Any

import pytest

from durable_celery import (
    Durable,
    DurableError,
    EncodingError,
    UnknownWorkflowError,
    WorkflowArgumentsError,
)
from durable_celery.testing.local import LocalEnvironment


class Opaque:
    """Not a type the codec knows."""


def test_arguments_that_do_not_fit_the_signature_are_refused_before_anything_is_written(
    durable: Durable,
) -> None:
    @durable.workflow
    def checkout(order_id: str, cents: int = 0) -> None:
        return None

    env = LocalEnvironment(durable)
    signature = r"signature is \S*checkout\(order_id: 'str', cents: 'int' = 0\)"
    with pytest.raises(WorkflowArgumentsError, match=rf"too many positional.*{signature}"):
        checkout.start("o-1", 5, 6)
    with pytest.raises(WorkflowArgumentsError, match="missing a required argument: 'order_id'"):
        checkout.start(cents=5)
    with pytest.raises(WorkflowArgumentsError, match="unexpected keyword argument 'coupon'"):
        checkout.start("o-1", coupon="FREE")
    assert env.store.list_runs() == []
    assert not env.dispatcher.queue


def test_an_argument_that_cannot_be_stored_is_refused_naming_the_parameter_and_path(
    durable: Durable,
) -> None:
    @durable.workflow
    def checkout(customer: str, order: dict[str, object]) -> None:
        return None

    env = LocalEnvironment(durable)
    with pytest.raises(EncodingError) as caught:
        checkout.start("c-1", order={"items": [{"sku": "a"}, {"sku": Opaque()}]})
    message = str(caught.value)
    where = r"checkout\(order=\.\.\.\): field 'items\[1\]\.sku' of type \S*Opaque"
    assert re.search(where, message)
    assert "register_type" in message
    assert env.store.list_runs() == []
    assert not env.dispatcher.queue


def test_starting_an_unknown_workflow_by_name_raises_unknown_workflow_error(
    durable: Durable,
) -> None:
    @durable.workflow
    def known() -> None:
        return None

    env = LocalEnvironment(durable)
    with pytest.raises(UnknownWorkflowError, match=rf"'nope'.*known: .*{re.escape(known.name)}"):
        durable.start("nope")
    assert env.store.list_runs() == []


def test_starting_by_name_runs_the_registered_workflow(durable: Durable) -> None:
    @durable.workflow(name="greet")
    def greet(name: str) -> str:
        return f"hello {name}"

    env = LocalEnvironment(durable)
    assert env.result(durable.start("greet", "ada")) == "hello ada"


def test_starting_twice_with_one_run_id_returns_the_existing_run(durable: Durable) -> None:
    calls: list[int] = []

    @durable.step
    def record(x: int) -> int:
        calls.append(x)
        return x

    @durable.workflow
    def wf(x: int) -> int:
        return record(x)

    env = LocalEnvironment(durable, step_execution="dispatch")
    first = wf.start(1, run_id="order-42")
    again = wf.start(2, run_id="order-42")

    assert (first.created, again.created) == (True, False)
    assert again.run_id == first.run_id == "order-42"
    assert env.result(again) == 1  # the second start's arguments are ignored
    assert calls == [1]
    kinds = [e.kind for e in durable.history("order-42")]
    assert kinds.count("run_started") == 1
    assert len(env.store.list_runs()) == 1


def test_a_run_id_taken_by_another_workflow_is_refused(durable: Durable) -> None:
    @durable.workflow
    def one() -> int:
        return 1

    @durable.workflow
    def two() -> int:
        return 2

    env = LocalEnvironment(durable)
    one.start(run_id="shared")
    with pytest.raises(DurableError, match="already used by a run of workflow"):
        two.start(run_id="shared")
    assert [e.kind for e in durable.history("shared")] == ["run_started"]
    assert env.result(durable.run("shared")) == 1


def test_a_step_called_with_wrong_arguments_fails_the_run_with_a_type_error_naming_it(
    durable: Durable,
) -> None:
    @durable.step
    def ship(order_id: str) -> None:
        return None

    @durable.workflow
    def wf() -> None:
        ship("o-1", "express")  # type: ignore[call-arg]

    env = LocalEnvironment(durable, step_execution="dispatch")
    handle = wf.start()
    with pytest.raises(TypeError, match=rf"step {re.escape(repr(ship.name))} called with wrong"):
        env.result(handle)
    assert handle.status() == "failed"
    assert "step_scheduled" not in [e.kind for e in durable.history(handle.run_id)]


def test_a_step_argument_that_cannot_be_stored_fails_the_run_naming_the_parameter(
    durable: Durable,
) -> None:
    @durable.step
    def ship(order_id: str, box: object) -> None:
        return None

    @durable.workflow
    def wf() -> None:
        ship("o-1", box=[Opaque()])

    env = LocalEnvironment(durable, step_execution="dispatch")
    handle = wf.start()
    with pytest.raises(EncodingError, match=r"ship\(box=\.\.\.\): field '\[0\]' of type \S*Opaque"):
        env.result(handle)
    assert "step_scheduled" not in [e.kind for e in durable.history(handle.run_id)]


@pytest.mark.parametrize(
    "fn",
    [
        lambda: 0,
        lambda a: 0,
        lambda a, b=1: 0,
        lambda a, /, b, c=2: 0,
        lambda *a: 0,
        lambda a, *, k: 0,
        lambda a, **k: 0,
    ],
)
def test_a_positional_call_binds_exactly_when_the_arity_shortcut_says(fn: Any) -> None:
    from durable_celery.workflow.step import _positional_arity

    signature = inspect.signature(fn)
    arity = _positional_arity(signature)
    plain = all(
        p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
        for p in signature.parameters.values()
    )
    assert (arity is not None) == plain
    for n in range(5):
        try:
            signature.bind(*range(n))
        except TypeError:
            binds = False
        else:
            binds = True
        if arity is not None:
            assert (arity[0] <= n <= arity[1]) == binds, n


def test_a_step_with_defaults_refuses_too_many_or_too_few_positional_arguments(
    durable: Durable,
) -> None:
    @durable.step
    def ship(order_id: str, speed: str = "slow") -> str:
        return f"{order_id}:{speed}"

    @durable.workflow
    def wf(n: int) -> str:
        return ship(*["o-1", "fast", "extra"][:n])  # type: ignore[no-any-return]

    env = LocalEnvironment(durable, step_execution="inline")
    assert env.result(wf.start(1)) == "o-1:slow"
    assert env.result(wf.start(2)) == "o-1:fast"
    for n in (0, 3):
        with pytest.raises(TypeError, match="called with wrong arguments"):
            env.result(wf.start(n))
