"""Every supported value comes back as itself: same type, same value, nested or not."""

from __future__ import annotations

import enum
import uuid
from collections import OrderedDict, namedtuple
from datetime import date, datetime, time, timedelta, timezone
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from durable_celery.codec import Codec, Place
from durable_celery.codec.hashing import same_arguments
from durable_celery.errors import DecodingError, EncodingError


class Color(enum.Enum):
    RED = "red"
    GREEN = "green"


class Level(enum.IntEnum):
    LOW = 1
    HIGH = 2


class Mode(str, enum.Enum):
    FAST = "fast"


class Perm(enum.Flag):
    READ = 1
    WRITE = 2


def roundtrip(codec: Codec, place: Place, value: Any) -> Any:
    return codec.decode(codec.encode(value, place), place)


@pytest.mark.parametrize(
    "value",
    [
        None,
        True,
        False,
        0,
        -1,
        2**63 - 1,
        2**64 - 1,
        -(2**63),
        2**64,
        2**200,
        -(2**200) - 7,
        1.5,
        -0.0,
        float("inf"),
        "",
        "héllo",
        b"\x00\xff",
        [],
        [1, "a"],
        {},
        {"a": 1},
        (),
        (1,),
        (1, (2, (3,))),
        set(),
        {1, 2, 3},
        frozenset(),
        frozenset({"a", "b"}),
        date(2024, 2, 29),
        time(23, 59, 59, 999999),
        timedelta(days=-3, seconds=5, microseconds=7),
        timedelta.max,
        Decimal("3.14159265358979323846264338327950288"),
        Decimal("-0"),
        Decimal("1E+30"),
        Decimal("Infinity"),
        Decimal("-Infinity"),
        uuid.UUID("12345678-1234-5678-1234-567812345678"),
        1 + 2j,
        complex(0, -1.5),
    ],
    ids=repr,
)
def test_a_supported_value_comes_back_equal_and_of_the_same_type(
    codec: Codec, place: Place, value: Any
) -> None:
    result = roundtrip(codec, place, value)
    assert type(result) is type(value)
    assert result == value
    assert codec.pack(result) == codec.pack(value)


def test_decimal_nan_comes_back_as_a_decimal_nan(codec: Codec, place: Place) -> None:
    for text in ("NaN", "-NaN", "sNaN"):
        result = roundtrip(codec, place, Decimal(text))
        assert type(result) is Decimal
        assert str(result) == text


def test_a_float_nan_comes_back_as_nan(codec: Codec, place: Place) -> None:
    result = roundtrip(codec, place, float("nan"))
    assert type(result) is float and result != result


def test_a_tuple_stays_a_tuple_and_a_list_stays_a_list(codec: Codec, place: Place) -> None:
    result = roundtrip(codec, place, {"t": (1, [2, (3, [4])]), "l": [(5,)]})
    assert type(result["t"]) is tuple
    assert type(result["t"][1]) is list
    assert type(result["t"][1][1]) is tuple
    assert type(result["t"][1][1][1]) is list
    assert type(result["l"][0]) is tuple


def test_a_set_and_a_frozenset_keep_their_own_types(codec: Codec, place: Place) -> None:
    result = roundtrip(codec, place, [{1, 2}, frozenset({1, 2}), {frozenset({(1, "a")})}])
    assert [type(item) for item in result] == [set, frozenset, set]
    assert result[2] == {frozenset({(1, "a")})}


def test_dict_keys_of_any_hashable_type_come_back_with_their_types(
    codec: Codec, place: Place
) -> None:
    value = {1: "int", (1, "a"): "tuple", frozenset({2}): "frozen", b"k": "bytes", None: "none"}
    result = roundtrip(codec, place, value)
    assert result == value
    assert [type(key) for key in result] == [type(key) for key in value]


def test_dict_order_is_kept(codec: Codec, place: Place) -> None:
    value = {"z": 1, "a": 2, "m": 3}
    assert list(roundtrip(codec, place, value)) == ["z", "a", "m"]


def test_a_bytearray_comes_back_as_bytes(codec: Codec, place: Place) -> None:
    assert roundtrip(codec, place, bytearray(b"abc")) == b"abc"
    assert type(roundtrip(codec, place, bytearray(b"abc"))) is bytes


def test_a_naive_datetime_stays_naive(codec: Codec, place: Place) -> None:
    value = datetime(2024, 5, 17, 12, 30, 45, 123456)
    result = roundtrip(codec, place, value)
    assert result == value and result.tzinfo is None


@pytest.mark.parametrize(
    "tz",
    [
        timezone.utc,
        timezone(timedelta(hours=5, minutes=30)),
        timezone(timedelta(hours=-8), "PST"),
        timezone(timedelta(seconds=-1, microseconds=5)),
    ],
    ids=repr,
)
def test_an_aware_datetime_keeps_its_offset_and_zone_name(
    codec: Codec, place: Place, tz: timezone
) -> None:
    value = datetime(2024, 5, 17, 12, 30, 45, 123456, tzinfo=tz)
    result = roundtrip(codec, place, value)
    assert result == value
    assert result.utcoffset() == value.utcoffset()
    assert result.tzname() == value.tzname()
    assert result.tzinfo == tz


def test_a_utc_datetime_comes_back_with_the_utc_singleton(codec: Codec, place: Place) -> None:
    assert roundtrip(codec, place, datetime(2024, 1, 1, tzinfo=timezone.utc)).tzinfo is timezone.utc


def test_a_zoneinfo_datetime_keeps_its_zone_and_fold(codec: Codec, place: Place) -> None:
    paris = ZoneInfo("Europe/Paris")
    # 02:30 on 2024-10-27 happens twice in Paris; fold=1 is the second one.
    value = datetime(2024, 10, 27, 2, 30, tzinfo=paris, fold=1)
    result = roundtrip(codec, place, value)
    assert result.tzinfo is paris
    assert result.fold == 1
    assert result.utcoffset() == timedelta(hours=1)
    assert result.timestamp() == value.timestamp()


def test_a_time_keeps_its_timezone(codec: Codec, place: Place) -> None:
    value = time(8, 15, tzinfo=timezone(timedelta(hours=2)))
    result = roundtrip(codec, place, value)
    assert result == value and result.utcoffset() == timedelta(hours=2)
    zoned = roundtrip(codec, place, time(8, 15, tzinfo=ZoneInfo("Asia/Tokyo")))
    assert zoned.tzinfo is ZoneInfo("Asia/Tokyo")


def test_an_enum_member_comes_back_as_the_same_member(codec: Codec, place: Place) -> None:
    value = [Color.RED, Level.HIGH, Mode.FAST, Perm.READ, Perm.READ | Perm.WRITE]
    result = roundtrip(codec, place, value)
    assert all(got is want for got, want in zip(result, value, strict=True))


def test_an_int_or_str_enum_is_not_flattened_to_its_value(codec: Codec, place: Place) -> None:
    result = roundtrip(codec, place, {Level.LOW: Mode.FAST})
    (key,) = result
    assert key is Level.LOW and result[key] is Mode.FAST


def test_an_enum_defined_inside_a_function_is_refused_when_encoded(
    codec: Codec, place: Place
) -> None:
    class Local(enum.Enum):
        A = 1

    with pytest.raises(EncodingError, match="not importable at module level"):
        codec.encode({"state": Local.A}, place)


def test_subclasses_of_plain_types_are_stored_as_their_base_type(
    codec: Codec, place: Place
) -> None:
    Point = namedtuple("Point", "x y")

    class Name(str):
        def __str__(self) -> str:
            return "overridden"

    class Count(int):
        pass

    result = roundtrip(
        codec, place, [OrderedDict(a=1), Point(1, 2), Name("bob"), Count(2**70), Count(3)]
    )
    assert result == [{"a": 1}, (1, 2), "bob", 2**70, 3]
    assert [type(item) for item in result] == [dict, tuple, str, int, int]


def test_deeply_nested_mixed_containers_round_trip(codec: Codec, place: Place) -> None:
    value = {
        "order": {
            "lines": [(uuid.UUID(int=7), Decimal("9.99"), 2), (uuid.UUID(int=8), Decimal("1"), 1)],
            "tags": frozenset({"gift", "rush"}),
            "placed": datetime(2024, 1, 2, 3, 4, 5, tzinfo=timezone.utc),
            "window": (date(2024, 1, 3), timedelta(hours=4)),
            "color": Color.GREEN,
        },
        "seen": {(1, 2), (3, 4)},
    }
    result = roundtrip(codec, place, value)
    assert result == value
    assert codec.pack(result) == codec.pack(value)


def test_pack_and_unpack_round_trip_without_an_envelope(codec: Codec) -> None:
    value = {"a": (1, {2}), "b": [Decimal("1.5")]}
    assert codec.unpack(codec.pack(value)) == value


def test_canonical_pack_bytes_are_pinned(codec: Codec) -> None:
    # If these bytes change, every stored fingerprint changes: change them only on purpose.
    assert codec.pack((1, "a")) == b"\xd6\x01\x92\x01\xa1a"  # fixext4, code 1: [1, "a"]
    assert codec.pack({"b", "a"}) == b"\xc7\x05\x02\x92\xa1a\xa1b"
    value = {"x": (1, 2), "y": frozenset({3})}
    assert codec.fingerprint(value) == "s32f9066d23799ef3"
    # Recorded before argument hashes were SHA-256: still names the same arguments.
    assert same_arguments("ee903bc87d5271a3", codec.pack(value), codec.fingerprint(value))


def test_an_unknown_extension_type_is_a_corrupt_payload(codec: Codec) -> None:
    with pytest.raises(DecodingError, match="corrupt payload"):
        codec.unpack(b"\xd4\x63\x00")  # fixext1, code 99
