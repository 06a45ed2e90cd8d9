"""The envelope: compression when it pays, AES-GCM bound to its place, rotation, clear errors."""

from __future__ import annotations

import os
from typing import Any

import pytest

from durable_celery.codec import Codec, Place
from durable_celery.errors import ConfigurationError, DecodingError, DecryptionError

COMPRESSED, ENCRYPTED = 0x01, 0x02
KEY_A = bytes(range(32))
KEY_B = bytes(range(100, 132))


def flags(blob: bytes) -> int:
    return blob[1]


def test_a_small_payload_is_stored_uncompressed(place: Place) -> None:
    codec = Codec(compression_threshold=1024)
    blob = codec.encode({"name": "x" * 100}, place)
    assert flags(blob) == 0
    assert blob[2:] == codec.pack({"name": "x" * 100})


def test_a_payload_at_the_threshold_is_compressed_when_that_is_smaller(place: Place) -> None:
    codec = Codec(compression_threshold=1024)
    value = "abc" * 1000
    blob = codec.encode(value, place)
    assert flags(blob) & COMPRESSED
    assert len(blob) < len(codec.pack(value))
    assert codec.decode(blob, place) == value


def test_the_threshold_is_inclusive(place: Place) -> None:
    value = "a" * 200
    size = len(Codec().pack(value))
    assert flags(Codec(compression_threshold=size).encode(value, place)) & COMPRESSED
    assert not flags(Codec(compression_threshold=size + 1).encode(value, place)) & COMPRESSED


def test_an_incompressible_payload_above_the_threshold_is_stored_as_is(place: Place) -> None:
    codec = Codec(compression_threshold=16)
    value = os.urandom(4096)
    blob = codec.encode(value, place)
    assert flags(blob) == 0
    assert codec.decode(blob, place) == value


def test_compression_and_encryption_combine(keyed: Codec, place: Place) -> None:
    blob = keyed.encode(["same line"] * 500, place)
    assert flags(blob) == COMPRESSED | ENCRYPTED
    assert keyed.decode(blob, place) == ["same line"] * 500


def test_a_keyed_codec_encrypts_and_the_plaintext_is_not_visible(
    keyed: Codec, place: Place
) -> None:
    assert keyed.encrypting and not Codec().encrypting
    blob = keyed.encode({"card": "4111-1111"}, place)
    assert flags(blob) == ENCRYPTED
    assert b"4111" not in blob
    assert blob[2:5] == b"\x02k1"


def test_every_encryption_uses_a_fresh_nonce(keyed: Codec, place: Place) -> None:
    first, second = keyed.encode("same", place), keyed.encode("same", place)
    assert first != second
    assert keyed.decode(first, place) == keyed.decode(second, place) == "same"


def test_an_old_key_still_decrypts_after_a_new_key_is_put_first(place: Place) -> None:
    old = Codec([("k1", KEY_A)]).encode({"v": 1}, place)
    rotated = Codec([("k2", KEY_B), ("k1", KEY_A)])
    assert rotated.decode(old, place) == {"v": 1}
    new = rotated.encode({"v": 2}, place)
    assert new[2:5] == b"\x02k2"
    with pytest.raises(DecryptionError, match="'k2'"):
        Codec([("k1", KEY_A)]).decode(new, place)


def test_an_unknown_key_id_names_the_key_and_the_setting(place: Place) -> None:
    blob = Codec([("old-key", KEY_A)]).encode("x", place)
    with pytest.raises(DecryptionError) as caught:
        Codec([("k9", KEY_B)]).decode(blob, place)
    assert "'old-key'" in str(caught.value)
    assert "durable_encryption_keys" in str(caught.value)


def test_an_encrypted_payload_without_any_keys_names_the_key(place: Place) -> None:
    blob = Codec([("k1", KEY_A)]).encode("x", place)
    with pytest.raises(DecryptionError, match=r"'k1'.*no encryption keys are configured"):
        Codec().decode(blob, place)


def test_wrong_key_bytes_under_the_same_id_fail_clearly(place: Place) -> None:
    blob = Codec([("k1", KEY_A)]).encode("x", place)
    with pytest.raises(DecryptionError, match=r"key id 'k1'.*altered or belongs to another run"):
        Codec([("k1", KEY_B)]).decode(blob, place)


@pytest.mark.parametrize(
    "elsewhere",
    [
        Place("run-2", "step_completed", "s3"),
        Place("run-1", "step_scheduled", "s3"),
        Place("run-1", "step_completed", "s4"),
        Place("run-1", "step_completed", ""),
    ],
    ids=str,
)
def test_a_payload_moved_to_another_place_does_not_decrypt(
    keyed: Codec, place: Place, elsewhere: Place
) -> None:
    blob = keyed.encode({"amount": 1999}, place)
    with pytest.raises(DecryptionError, match="belongs to another run/entry"):
        keyed.decode(blob, elsewhere)


def test_place_associated_data_cannot_be_shifted_between_fields() -> None:
    assert Place("ab", "c").aad() != Place("a", "bc").aad()
    assert Place("a", "b", "").aad() != Place("a", "", "b").aad()


@pytest.mark.parametrize("offset", [0, 1, 2, 4, 5, 10, -1])
def test_any_altered_byte_is_refused(keyed: Codec, place: Place, offset: int) -> None:
    blob = bytearray(keyed.encode({"amount": 1999}, place))
    blob[offset] ^= 0x01
    with pytest.raises(DecodingError):
        keyed.decode(bytes(blob), place)


def test_clearing_the_encrypted_flag_does_not_yield_a_value(keyed: Codec, place: Place) -> None:
    blob = bytearray(keyed.encode("secret", place))
    blob[1] = 0
    with pytest.raises(DecodingError):
        Codec().decode(bytes(blob), place)


def test_require_encryption_refuses_a_plaintext_payload(place: Place) -> None:
    plain = Codec().encode({"v": 1}, place)
    strict = Codec([("k1", KEY_A)], require_encryption=True)
    with pytest.raises(DecryptionError, match="not encrypted"):
        strict.decode(plain, place)


def test_a_keyed_codec_without_require_encryption_reads_old_plaintext(place: Place) -> None:
    plain = Codec().encode({"v": 1}, place)
    assert Codec([("k1", KEY_A)]).decode(plain, place) == {"v": 1}


def test_require_encryption_without_keys_is_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError, match="durable_encryption_keys"):
        Codec(require_encryption=True)


@pytest.mark.parametrize(
    "keyring",
    [
        [("k1", bytes(16))],
        [("k1", bytes(33))],
        [("k1", "not bytes" * 4)],
        [("", bytes(32))],
        [("k" * 256, bytes(32))],
        [("k1", bytes(32)), ("k1", bytes(range(32)))],
    ],
    ids=["16 bytes", "33 bytes", "text key", "empty id", "long id", "duplicate id"],
)
def test_a_bad_keyring_is_a_configuration_error(keyring: Any) -> None:
    with pytest.raises(ConfigurationError, match="durable_encryption_keys"):
        Codec(keyring)


def test_a_negative_compression_threshold_is_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError, match="durable_compression_threshold"):
        Codec(compression_threshold=-1)


@pytest.mark.parametrize(
    "blob",
    [
        b"",
        b"\xc1",
        b"hello world",
        b"\x00\x00\x01",
        b"\xc1\x80\x01",
        b"\xc1\x00\xc1",
        b"\xc1\x00\x92\x01",
        b"\xc1\x00\x01\x02",
        b"\xc1\x01not zlib at all",
        b"\xc1\x02\x02k1" + bytes(20),
        b"\xc1\x02\x40k1",
    ],
    ids=[
        "empty",
        "magic only",
        "not an envelope",
        "bad magic",
        "unknown flag",
        "msgpack never-used byte",
        "truncated msgpack",
        "extra data after the value",
        "bad zlib",
        "ciphertext too short",
        "key id longer than the blob",
    ],
)
def test_corrupt_bytes_are_a_decoding_error_never_a_library_error(
    keyed: Codec, place: Place, blob: bytes
) -> None:
    with pytest.raises(DecodingError, match="corrupt payload"):
        keyed.decode(blob, place)


def test_a_non_bytes_payload_is_a_decoding_error(codec: Codec, place: Place) -> None:
    with pytest.raises(DecodingError):
        codec.decode("text", place)  # type: ignore[arg-type]


def test_a_memoryview_payload_decodes(codec: Codec, place: Place) -> None:
    assert codec.decode(memoryview(codec.encode([1], place)), place) == [1]  # type: ignore[arg-type]


def test_compression_is_kept_only_when_it_saves_a_quarter_of_the_payload() -> None:
    import base64
    import os

    from durable_celery.codec.compression import compress

    tokens = base64.b64encode(os.urandom(7600))  # random text: deflate saves about 24%
    assert compress(tokens, threshold=1024) == (tokens, False)
    rows = repr([{"id": i, "name": f"item-{i}", "price": i * 3} for i in range(250)]).encode()
    packed, compressed = compress(rows, threshold=1024)
    assert compressed and len(packed) <= 0.75 * len(rows)
    assert compress(rows[:1000], threshold=1024) == (rows[:1000], False)  # below the threshold


def test_prose_and_source_text_pass_the_probe_and_are_compressed() -> None:
    import inspect

    from durable_celery.codec import compression

    source = inspect.getsource(compression).encode() * 2  # code and its comments, 5 KiB+
    packed, compressed = compression.compress(source, threshold=1024)
    assert compressed and len(packed) <= 0.6 * len(source)


def test_sealing_the_fingerprints_packed_bytes_stores_the_value(codec: Codec, place: Place) -> None:
    value = ((1, "two", b"\x03" * 2000), {"k": frozenset({4})})
    fingerprint, packed = codec.fingerprint_packed(value)
    assert fingerprint == codec.fingerprint(value)
    assert packed == codec.pack(value)
    assert codec.decode(codec.seal(packed, place), place) == value


def test_a_source_whose_payloads_do_not_compress_is_probed_once_in_a_while(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from durable_celery.codec import compression

    probes: list[int] = []
    probe = compression._probe_size
    monkeypatch.setattr(compression, "_probe_size", lambda b: probes.append(1) or probe(b))
    compressor = compression.Compressor(threshold=1024)
    skip = compression._SKIP
    noise = [os.urandom(4096) for _ in range(2 * (skip + 1) + 1)]
    assert all(compressor.compress(n, "tokens") == (n, False) for n in noise)
    assert len(probes) == 3  # payloads 0, skip + 1 and 2 * (skip + 1); the rest stored unprobed
    # Another source is probed (and compressed) on every payload.
    rows = repr([{"id": i, "name": f"item-{i}"} for i in range(200)]).encode()
    for _ in range(3):
        assert compressor.compress(rows, "rows")[1]
    assert len(probes) == 6
    # The skipping source turns compressible: compressed again once its skips run out.
    turned = [compressor.compress(rows, "tokens")[1] for _ in range(skip + 1)]
    assert turned == [False] * skip + [True]


def test_skipped_probes_never_change_a_decoded_value(place: Place) -> None:
    codec = Codec(compression_threshold=64)
    values: list[Any] = [os.urandom(2048) for _ in range(5)] + ["abc" * 1000] * 20
    blobs = [codec.encode(v, place, label="result of step s") for v in values]
    assert [codec.decode(b, place) for b in blobs] == values
    assert not any(flags(b) & COMPRESSED for b in blobs[:16])  # one probe, then skipped
    assert all(flags(b) & COMPRESSED for b in blobs[16:])
    # Payloads of other places and labels are other sources: probed on their own.
    assert flags(codec.encode("abc" * 1000, place, label="result of step t")) & COMPRESSED


def test_the_sources_a_compressor_remembers_are_bounded() -> None:
    from durable_celery.codec import compression

    compressor = compression.Compressor(threshold=16)
    noise = os.urandom(64)
    for i in range(compression._SOURCES + 10):
        compressor.compress(noise, f"source {i}")
    assert 0 < len(compressor._skips) <= compression._SOURCES
