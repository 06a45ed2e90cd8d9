"""A value the codec cannot store is refused where it is passed, naming the label, path and type."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest

from durable_celery.codec import Codec, Place, TypeRegistry
from durable_celery.errors import EncodingError


class Foo:
    pass


@dataclass
class Line:
    sku: str
    price: Any


def refusal(codec: Codec, value: Any, label: str = "charge(order=...)") -> str:
    with pytest.raises(EncodingError) as caught:
        codec.encode(value, Place("r", "step_scheduled", "s1"), label=label)
    return str(caught.value)


def test_the_message_names_the_label_the_path_and_the_type(codec: Codec) -> None:
    message = refusal(codec, {"items": [1, 2, 3, Foo()]})
    assert message == (
        f"charge(order=...): field 'items[3]' of type {__name__}.Foo cannot be stored; "
        "register it with durable.register_type(...) or pass a supported value"
    )


def test_the_path_goes_through_registered_types_by_field_name() -> None:
    registry = TypeRegistry()
    registry.register(Line)
    codec = Codec(registry=registry)
    message = refusal(codec, {"items": [Line("a", 1), Line("b", Foo())]})
    assert "field 'items[1].price' of type" in message
    assert f"{__name__}.Foo" in message


def test_the_path_goes_through_tuples_sets_and_odd_keys(codec: Codec) -> None:
    assert "field 'a[0][1]'" in refusal(codec, {"a": ((1, Foo()),)})
    assert "field 'tags[<member>]'" in refusal(codec, {"tags": frozenset({1, object()})})
    assert "field \"['my key']\"" in refusal(codec, {"my key": Foo()})
    assert "field '[7]'" in refusal(codec, {7: Foo()})
    assert "field 'd[<key>]' of type object" in refusal(codec, {"d": {object(): 1}})


def test_a_value_refused_at_the_top_is_called_the_value(codec: Codec) -> None:
    message = refusal(codec, Foo(), label="send_receipt(order_id=...)")
    assert message.startswith(f"send_receipt(order_id=...): value of type {__name__}.Foo")


def test_pack_and_fingerprint_refuse_the_same_way(codec: Codec) -> None:
    with pytest.raises(EncodingError, match=r"^args: field 'x' of type"):
        codec.pack({"x": Foo()}, label="args")
    with pytest.raises(EncodingError, match=r"^args: field 'x' of type"):
        codec.fingerprint({"x": Foo()}, label="args")


def test_a_value_that_contains_itself_is_refused(codec: Codec) -> None:
    loop: list[Any] = [1]
    loop.append(loop)
    assert "field '[1]' of type list cannot be stored: it contains itself" in refusal(codec, loop)


def test_a_registered_encoder_that_raises_is_named_in_the_message() -> None:
    def broken(obj: Foo) -> Any:
        raise ValueError("no way")

    registry = TypeRegistry()
    registry.register(Foo, encode=broken, decode=lambda data: Foo())
    message = refusal(Codec(registry=registry), {"f": Foo()})
    assert "field 'f' of type" in message
    assert "its registered encoder raised ValueError: no way" in message


def test_the_refusal_is_an_encoding_error_and_a_type_error(codec: Codec) -> None:
    with pytest.raises(TypeError):
        codec.pack(Foo())
