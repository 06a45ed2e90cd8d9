"""Exceptions cross the log: rebuilt as their own type when faithful, as StepError otherwise."""

from __future__ import annotations

from typing import Any

import pytest

from durable_celery.codec import Codec, Place, encode_exception, rebuild_exception
from durable_celery.errors import FatalError, StepError


class PaymentDeclined(Exception):
    """Built from its args: rebuildable."""


class OrderError(Exception):
    """Its __init__ does not take its own args back: not rebuildable."""

    def __init__(self, order_id: str, cents: int) -> None:
        super().__init__(f"order {order_id} failed for {cents} cents")


class Opaque:
    def __repr__(self) -> str:
        return "<Opaque thing>"


def raised(exc: BaseException) -> BaseException:
    """``exc`` with a real traceback attached."""
    try:
        raise exc
    except BaseException as caught:
        return caught


def recorded_traceback(exc: BaseException) -> str:
    text = exc.__dict__["__durable_traceback__"]
    assert isinstance(text, str)
    return text


def roundtrip(codec: Codec, place: Place, value: Any) -> Any:
    return codec.decode(codec.encode(value, place), place)


@pytest.mark.parametrize(
    "exc",
    [
        ValueError("bad value", 42),
        KeyError("missing"),
        RuntimeError(),
        ZeroDivisionError("division by zero"),
        PaymentDeclined("card expired", {"code": 51}),
        FatalError("order rejected"),
    ],
    ids=repr,
)
def test_an_importable_exception_is_rebuilt_as_its_own_type(
    codec: Codec, place: Place, exc: Exception
) -> None:
    result = roundtrip(codec, place, exc)
    assert type(result) is type(exc)
    assert result.args == exc.args
    assert str(result) == str(exc)


def test_the_traceback_text_is_attached_to_a_rebuilt_exception(codec: Codec, place: Place) -> None:
    result = roundtrip(codec, place, raised(PaymentDeclined("card expired")))
    assert type(result) is PaymentDeclined
    text = recorded_traceback(result)
    assert "Traceback (most recent call last)" in text
    assert "PaymentDeclined: card expired" in text
    assert "in raised" in text


def test_an_exception_never_raised_has_empty_traceback_text(codec: Codec, place: Place) -> None:
    assert roundtrip(codec, place, ValueError("x")).__durable_traceback__ == ""


def test_an_exception_that_cannot_be_built_from_its_args_becomes_a_step_error(
    codec: Codec, place: Place
) -> None:
    result = roundtrip(codec, place, raised(OrderError("o-42", 1999)))
    assert type(result) is StepError
    assert result.type_name.endswith("OrderError")
    assert result.message == "order o-42 failed for 1999 cents"
    assert "OrderError: order o-42 failed" in result.traceback
    assert recorded_traceback(result) == result.traceback


def test_an_exception_class_defined_in_a_function_becomes_a_step_error(
    codec: Codec, place: Place
) -> None:
    class Local(Exception):
        pass

    result = roundtrip(codec, place, Local("inner"))
    assert type(result) is StepError
    assert "<locals>.Local" in result.type_name
    assert result.message == "inner"


@pytest.mark.parametrize("exc", [KeyboardInterrupt("stop"), SystemExit(3)], ids=repr)
def test_a_base_exception_that_is_not_an_exception_is_never_rebuilt(
    codec: Codec, place: Place, exc: BaseException
) -> None:
    result = roundtrip(codec, place, exc)
    assert type(result) is StepError
    assert result.type_name == type(exc).__name__


def test_an_exception_of_an_unimportable_module_becomes_a_step_error() -> None:
    data = {
        "module": "no_such_module_for_durable_tests",
        "qualname": "Gone",
        "message": "it went away",
        "args": ["it went away"],
        "traceback": "Traceback ...",
    }
    result = rebuild_exception(data)
    assert isinstance(result, StepError)
    assert result.type_name == "no_such_module_for_durable_tests.Gone"
    assert result.traceback == "Traceback ..."


def test_a_name_that_is_not_an_exception_class_is_not_called() -> None:
    data = {"module": "os", "qualname": "remove", "message": "x", "args": ["/nonexistent"]}
    result = rebuild_exception({**data, "traceback": ""})
    assert isinstance(result, StepError)


def test_an_arg_the_codec_cannot_store_is_kept_as_its_repr(codec: Codec, place: Place) -> None:
    result = roundtrip(codec, place, PaymentDeclined("declined", Opaque()))
    assert isinstance(result, StepError)  # str() changed, so the type is not faked
    assert result.message == "('declined', <Opaque thing>)"
    data = encode_exception(PaymentDeclined("declined", Opaque()))
    assert data["args"] == ["declined", "<Opaque thing>"]


def test_an_os_error_is_rebuilt_with_its_errno(codec: Codec, place: Place) -> None:
    result = roundtrip(codec, place, FileNotFoundError(2, "No such file"))
    assert type(result) is FileNotFoundError
    assert result.errno == 2


def test_a_step_error_round_trips_field_for_field(codec: Codec, place: Place) -> None:
    original = StepError("shop.errors.Declined", "card expired", "Traceback: line 1")
    result = roundtrip(codec, place, original)
    assert type(result) is StepError
    assert (result.type_name, result.message, result.traceback) == (
        "shop.errors.Declined",
        "card expired",
        "Traceback: line 1",
    )


def test_a_rebuilt_error_raised_again_keeps_its_first_traceback_first(
    codec: Codec, place: Place
) -> None:
    first = roundtrip(codec, place, raised(PaymentDeclined("card expired")))
    again = roundtrip(codec, place, raised(first))
    text = again.__durable_traceback__
    assert text.startswith(first.__durable_traceback__)
    assert "Raised again" in text


def test_exceptions_nested_in_containers_round_trip(codec: Codec, place: Place) -> None:
    result = roundtrip(codec, place, {"errors": [ValueError("a"), (KeyError("b"),)]})
    assert type(result["errors"][0]) is ValueError
    assert type(result["errors"][1][0]) is KeyError
