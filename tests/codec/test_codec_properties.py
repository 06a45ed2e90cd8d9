"""Property-based: any value built from the supported types round-trips, and packs canonically."""

from __future__ import annotations

import contextlib
import os
import random
import subprocess
import sys
import uuid
from datetime import timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from durable_celery.codec import Codec, Place
from durable_celery.errors import DecodingError

CODEC = Codec()
KEYED = Codec([("k1", bytes(32))])
PLACE = Place("run-p", "step_completed", "s1")

fixed_offsets = st.builds(
    timezone, st.timedeltas(min_value=timedelta(hours=-23), max_value=timedelta(hours=23))
)
zones = st.one_of(st.none(), st.just(timezone.utc), fixed_offsets, st.timezones())

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=-(2**300), max_value=2**300),
    st.floats(allow_nan=False),
    st.text(),
    st.binary(),
    st.datetimes(timezones=zones),
    st.dates(),
    st.times(timezones=st.one_of(st.none(), fixed_offsets)),
    st.timedeltas(),
    st.decimals(allow_nan=False),
    st.uuids(),
    st.complex_numbers(allow_nan=False),
)

hashables = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.text(), st.binary(), st.uuids()),
    lambda inner: st.one_of(
        st.lists(inner, max_size=4).map(tuple), st.frozensets(inner, max_size=4)
    ),
    max_leaves=10,
)

values = st.recursive(
    st.one_of(scalars, hashables),
    lambda inner: st.one_of(
        st.lists(inner, max_size=5),
        st.lists(inner, max_size=5).map(tuple),
        st.dictionaries(hashables, inner, max_size=5),
        st.sets(hashables, max_size=5),
        st.frozensets(hashables, max_size=5),
    ),
    max_leaves=25,
)


def assert_same(result: Any, value: Any) -> None:
    assert type(result) is type(value)
    assert result == value
    # Equal bytes catch what == forgives: 1 vs True inside containers, tz vs offset, tuple vs list.
    assert CODEC.pack(result) == CODEC.pack(value)


@given(values)
@settings(max_examples=300, deadline=None)
def test_any_supported_value_round_trips_through_encode_and_decode(value: Any) -> None:
    assert_same(CODEC.decode(CODEC.encode(value, PLACE), PLACE), value)


@given(values)
@settings(max_examples=100, deadline=None)
def test_any_supported_value_round_trips_through_an_encrypted_envelope(value: Any) -> None:
    assert_same(KEYED.decode(KEYED.encode(value, PLACE), PLACE), value)


@given(values)
@settings(max_examples=200, deadline=None)
def test_packing_the_same_value_twice_gives_the_same_bytes(value: Any) -> None:
    assert CODEC.pack(value) == CODEC.pack(value)


@given(st.lists(hashables, max_size=12, unique=True), st.randoms())
@settings(max_examples=200, deadline=None)
def test_a_set_has_one_fingerprint_whatever_its_insertion_order(
    members: list[Any], rnd: random.Random
) -> None:
    shuffled = list(members)
    rnd.shuffle(shuffled)
    forward, backward, mixed = set(members), set(reversed(members)), set(shuffled)
    assert CODEC.fingerprint(forward) == CODEC.fingerprint(backward) == CODEC.fingerprint(mixed)
    assert CODEC.fingerprint(frozenset(members)) == CODEC.fingerprint(frozenset(shuffled))
    assert CODEC.fingerprint({"s": forward}) == CODEC.fingerprint({"s": mixed})


def test_a_fingerprint_is_s_and_16_hex_characters_and_tells_types_apart() -> None:
    fingerprint = CODEC.fingerprint({"a": 1})
    assert fingerprint[0] == "s" and len(fingerprint) == 17 and int(fingerprint[1:], 16) >= 0
    assert CODEC.fingerprint((1, 2)) != CODEC.fingerprint([1, 2])
    assert CODEC.fingerprint({1, 2}) != CODEC.fingerprint(frozenset({1, 2}))


def test_the_fingerprint_of_a_set_of_strings_is_the_same_under_any_hash_seed() -> None:
    literal = "{'alpha', 'beta', 'gamma', 'delta', ('x', 'y'), frozenset('ab')}"
    script = f"from durable_celery.codec import Codec; print(Codec().fingerprint({literal}))"
    root = Path(__file__).resolve().parents[2]
    outputs = set()
    for seed in ("1", "2", "12345"):
        env = {**os.environ, "PYTHONHASHSEED": seed, "PYTHONPATH": str(root)}
        done = subprocess.run(
            [sys.executable, "-c", script], env=env, cwd=root, capture_output=True, text=True
        )
        assert done.returncode == 0, done.stderr
        outputs.add(done.stdout.strip())
    assert len(outputs) == 1
    in_process = CODEC.fingerprint({"alpha", "beta", "gamma", "delta", ("x", "y"), frozenset("ab")})
    assert outputs == {in_process}


def test_uuid_and_decimal_sets_sort_by_bytes_not_by_value() -> None:
    ids = [uuid.UUID(int=n) for n in (5, 1, 3)]
    assert CODEC.pack(set(ids)) == CODEC.pack(set(reversed(ids)))
    assert CODEC.pack({Decimal("1.0"), Decimal("2")}) == CODEC.pack({Decimal("2"), Decimal("1.0")})


@given(st.binary(max_size=64))
@settings(max_examples=500, deadline=None)
def test_arbitrary_bytes_give_a_value_or_a_decoding_error_never_a_library_error(
    body: bytes,
) -> None:
    for blob in (body, b"\xc1\x00" + body, b"\xc1\x01" + body, b"\xc1\x02\x02k1" + body):
        with contextlib.suppress(DecodingError):
            KEYED.decode(blob, PLACE)


@given(values, st.data())
@settings(max_examples=200, deadline=None)
def test_a_flipped_byte_in_a_plaintext_payload_never_escapes_as_a_library_error(
    value: Any, data: st.DataObject
) -> None:
    blob = bytearray(CODEC.encode(value, PLACE))
    index = data.draw(st.integers(min_value=0, max_value=len(blob) - 1))
    blob[index] = data.draw(st.integers(min_value=0, max_value=255))
    with contextlib.suppress(DecodingError):
        CODEC.decode(bytes(blob), PLACE)
