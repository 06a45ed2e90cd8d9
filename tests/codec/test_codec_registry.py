"""User types: dataclasses and models by default, anything else with encode/decode."""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import pytest

from durable_celery.codec import Codec, Place, TypeRegistry
from durable_celery.errors import ConfigurationError, DecodingError

PLACE = Place("r", "step_completed", "s1")


@dataclass(frozen=True)
class Money:
    cents: int
    currency: str = "EUR"


@dataclass
class Order:
    id: str
    total: Money
    lines: list[tuple[str, Decimal]] = field(default_factory=list)
    note: str = field(default="", init=False)


class Point:
    def __init__(self, x: int, y: int) -> None:
        self.x, self.y = x, y

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Point) and (self.x, self.y) == (other.x, other.y)

    __hash__ = None  # type: ignore[assignment]


class Model:
    """Shaped like a pydantic v2 model."""

    def __init__(self, name: str, tags: tuple[str, ...]) -> None:
        self.name, self.tags = name, tags

    def model_dump(self) -> dict[str, Any]:
        return {"name": self.name, "tags": self.tags}

    @classmethod
    def model_validate(cls, data: dict[str, Any]) -> Model:
        return cls(**data)


def codec_for(*classes: type) -> Codec:
    registry = TypeRegistry()
    for cls in classes:
        registry.register(cls)
    return Codec(registry=registry)


def test_a_registered_dataclass_comes_back_as_itself_with_nested_types() -> None:
    codec = codec_for(Money, Order)
    order = Order("o-42", Money(1999), [("sku-1", Decimal("9.99"))])
    result = codec.decode(codec.encode({"order": order}, PLACE), PLACE)["order"]
    assert type(result) is Order and result == order
    assert type(result.total) is Money
    assert type(result.lines[0]) is tuple and type(result.lines[0][1]) is Decimal


def test_a_dataclass_field_outside_init_is_not_stored() -> None:
    codec = codec_for(Money, Order)
    order = Order("o-1", Money(1))
    order.note = "scribble"
    assert codec.decode(codec.encode(order, PLACE), PLACE).note == ""


def test_a_class_with_its_own_encode_and_decode_round_trips() -> None:
    registry = TypeRegistry()
    registry.register(
        Point, name="geo.Point", encode=lambda p: [p.x, p.y], decode=lambda d: Point(*d)
    )
    codec = Codec(registry=registry)
    assert codec.decode(codec.encode([Point(1, 2)], PLACE), PLACE) == [Point(1, 2)]


def test_a_pydantic_style_model_uses_model_dump_and_model_validate() -> None:
    codec = codec_for(Model)
    result = codec.decode(codec.encode(Model("a", ("x", "y")), PLACE), PLACE)
    assert type(result) is Model and result.tags == ("x", "y")


def test_a_real_pydantic_model_round_trips() -> None:
    pydantic = pytest.importorskip("pydantic")

    class Item(pydantic.BaseModel):  # type: ignore[misc, name-defined]
        sku: str
        qty: int

    codec = codec_for(Item)
    assert codec.decode(codec.encode(Item(sku="a", qty=2), PLACE), PLACE) == Item(sku="a", qty=2)


def test_the_default_name_is_the_import_path() -> None:
    registry = TypeRegistry()
    registry.register(Money)
    entry = registry.for_name(f"{__name__}.Money")
    assert entry is not None and entry.cls is Money


def test_a_name_taken_by_another_class_is_refused() -> None:
    registry = TypeRegistry()
    registry.register(Money, name="money")
    with pytest.raises(ConfigurationError, match="'money' is already taken"):
        registry.register(Order, name="money")


def test_registering_a_class_again_replaces_its_functions_and_name() -> None:
    registry = TypeRegistry()
    registry.register(Money, name="money")
    registry.register(Money, name="money.v2")
    assert registry.for_name("money") is None
    assert registry.for_name("money.v2") is not None
    assert len(registry) == 1


def test_a_plain_class_without_encode_and_decode_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="pass both encode= and decode="):
        TypeRegistry().register(Point)
    with pytest.raises(ConfigurationError, match="pass both encode= and decode="):
        TypeRegistry().register(Point, encode=lambda p: [p.x, p.y])


@pytest.mark.parametrize("cls", [dict, tuple, int, Decimal])
def test_a_natively_stored_type_cannot_be_registered(cls: type) -> None:
    with pytest.raises(ConfigurationError, match="stored natively"):
        TypeRegistry().register(cls)


def test_a_type_unknown_to_the_reading_codec_is_a_clear_decoding_error() -> None:
    blob = codec_for(Money).encode(Money(5), PLACE)
    with pytest.raises(DecodingError, match=r"not registered.*register_type"):
        Codec().decode(blob, PLACE)


def test_a_decoder_that_raises_is_a_decoding_error_naming_the_type() -> None:
    registry = TypeRegistry()
    registry.register(Point, name="pt", encode=lambda p: [p.x, p.y], decode=lambda d: 1 / 0)
    codec = Codec(registry=registry)
    with pytest.raises(DecodingError, match=r"'pt'.*ZeroDivisionError"):
        codec.decode(codec.encode(Point(1, 2), PLACE), PLACE)


def test_a_subclass_of_a_registered_class_is_not_stored_as_its_base() -> None:
    @dataclass(frozen=True)
    class Special(Money):
        pass

    codec = codec_for(Money)
    with pytest.raises(TypeError):
        codec.encode(Special(1), PLACE)
