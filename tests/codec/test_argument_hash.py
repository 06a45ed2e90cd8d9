"""Argument hashes: SHA-256 for new entries, and entries recorded with BLAKE2b still match.

The saved histories (``tests/histories``) were recorded with BLAKE2b hashes; replaying them
(``test_saved_histories``) goes through the same comparison end to end.
"""

from __future__ import annotations

import hashlib

from hypothesis import given
from hypothesis import strategies as st

from durable_celery.codec import Codec
from durable_celery.codec.hashing import argument_hash, same_arguments
from durable_celery.replay.commands import ScheduleStep


def legacy(packed: bytes) -> str:
    return hashlib.blake2b(packed, digest_size=8).hexdigest()


def step(codec: Codec, *args: object) -> ScheduleStep:
    fingerprint, packed = codec.fingerprint_packed((args, {}))
    return ScheduleStep("s1", name="charge", args=args, fingerprint=fingerprint, packed=packed)


def test_a_new_hash_is_sha256_marked_as_such() -> None:
    packed = Codec().pack(((42,), {}))
    assert argument_hash(packed) == "s" + hashlib.sha256(packed).hexdigest()[:16]
    assert Codec().fingerprint_packed(((42,), {})) == (argument_hash(packed), packed)


def test_the_bytes_and_hash_of_a_call_never_change() -> None:
    """Recorded runs are replayed by later versions: a call packed differently would no longer
    match its recorded hash, and every run in flight would fail as nondeterministic."""
    args = ((42, "a", (1, (2,)), [3]), {"k": (None,)})
    assert Codec().fingerprint_packed(args) == (
        "sd3595cfe98e0677a",
        bytes.fromhex("c71a0192c70f01942aa161c706019201d5019102910381a16bd50191c0"),
    )


@given(st.binary(), st.binary())
def test_a_hash_matches_only_its_arguments_either_way(a: bytes, b: bytes) -> None:
    assert same_arguments(argument_hash(a), a, argument_hash(a))
    assert same_arguments(legacy(a), a, argument_hash(a))
    if a != b:
        assert not same_arguments(argument_hash(b), a, argument_hash(a))
        assert not same_arguments(legacy(b), a, argument_hash(a))


def test_a_recorded_call_matches_with_its_name_and_either_hash() -> None:
    codec = Codec()
    call = step(codec, 10, "eur")
    assert call.matches({"name": "charge", "h": call.fingerprint})
    assert call.matches({"name": "charge", "h": legacy(call.packed)})
    assert not call.matches({"name": "refund", "h": legacy(call.packed)})
    other = step(codec, 11, "eur")
    assert not call.matches({"name": "charge", "h": other.fingerprint})
    assert not call.matches({"name": "charge", "h": legacy(other.packed)})
    assert not call.matches({"name": "charge"})
