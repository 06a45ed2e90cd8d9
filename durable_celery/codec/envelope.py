"""The bytes a payload is stored as: a small header, then the body, sealed with AES-256-GCM.

Layout::

    magic (1) | flags (1) | [key id length (1) | key id (utf-8) | nonce (12)] | body

``flags`` bit 0: the body is zlib-compressed; bit 1: the part in brackets is present and the body
is ciphertext with its 16-byte tag. The magic byte ``0xC1`` is the one byte msgpack never uses, so a
bare msgpack blob is never mistaken for an envelope; a future layout takes another magic value.

The associated data is :meth:`Place.aad` plus the header, so a ciphertext only opens at the place it
was written for (run, entry kind, correlation id) and with the header it was written with: a blob
copied into another run or entry, or a flag flipped, fails authentication. Keys rotate through the
keyring: the first key seals, every key opens, and the key id in the header picks which.

A plaintext envelope still opens when keys are configured (so encryption can be switched on for a
live system), unless ``require_encryption`` is set.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Sequence
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from ..errors import ConfigurationError, DecodingError, DecryptionError

__all__ = ["Keyring", "Place", "seal", "unseal"]

MAGIC = 0xC1
COMPRESSED = 0x01
ENCRYPTED = 0x02
NONCE_SIZE = 12
TAG_SIZE = 16
KEY_SIZE = 32
_LENGTHS = struct.Struct(">III")
_AAD_DOMAIN = b"durable_celery/place/v1"


@dataclass(frozen=True)
class Place:
    """Where a payload lives in the log; bound into the AES-GCM associated data."""

    run_id: str
    kind: str
    cid: str = ""

    def aad(self) -> bytes:
        """Run id, kind and cid after their lengths, so no two places share the same bytes."""
        run_id, kind, cid = self.run_id.encode(), self.kind.encode(), self.cid.encode()
        lengths = _LENGTHS.pack(len(run_id), len(kind), len(cid))
        return b"".join((_AAD_DOMAIN, lengths, run_id, kind, cid))

    def __str__(self) -> str:
        return f"run {self.run_id!r}, {self.kind}" + (f" {self.cid!r}" if self.cid else "")


class Keyring:
    """AES-256-GCM keys by id; the first one seals."""

    def __init__(self, keys: Sequence[tuple[str, bytes]] = ()) -> None:
        self._ciphers: dict[str, tuple[bytes, AESGCM]] = {}
        for kid, key in keys:
            kid_bytes = kid.encode() if isinstance(kid, str) else b""
            if not 1 <= len(kid_bytes) <= 255:
                raise ConfigurationError(
                    f"durable_encryption_keys: key id {kid!r} must be a 1-255 byte string"
                )
            if not isinstance(key, (bytes, bytearray)) or len(key) != KEY_SIZE:
                raise ConfigurationError(
                    f"durable_encryption_keys: key {kid!r} must be {KEY_SIZE} bytes (AES-256)"
                )
            if kid in self._ciphers:
                raise ConfigurationError(f"durable_encryption_keys: key id {kid!r} appears twice")
            self._ciphers[kid] = (bytes((len(kid_bytes),)) + kid_bytes, AESGCM(bytes(key)))
        self.primary: str | None = next(iter(self._ciphers), None)

    def __bool__(self) -> bool:
        return self.primary is not None

    def __len__(self) -> int:
        return len(self._ciphers)

    def __contains__(self, kid: object) -> bool:
        return kid in self._ciphers

    def sealing(self) -> tuple[bytes, AESGCM]:
        """``(header bytes naming the key, cipher)`` of the primary key."""
        assert self.primary is not None
        return self._ciphers[self.primary]

    def opening(self, kid: str) -> AESGCM | None:
        entry = self._ciphers.get(kid)
        return entry[1] if entry is not None else None


def seal(body: bytes, place: Place, keyring: Keyring, *, compressed: bool) -> bytes:
    """The envelope holding ``body``; encrypted when the keyring has keys."""
    flags = COMPRESSED if compressed else 0
    if not keyring:
        return bytes((MAGIC, flags)) + body
    kid_header, cipher = keyring.sealing()
    header = bytes((MAGIC, flags | ENCRYPTED)) + kid_header
    nonce = os.urandom(NONCE_SIZE)
    return header + nonce + cipher.encrypt(nonce, body, place.aad() + header)


def unseal(
    blob: bytes, place: Place, keyring: Keyring, *, require_encryption: bool
) -> tuple[bytes, bool]:
    """``(body, whether it is compressed)`` from an envelope made by :func:`seal`."""
    if type(blob) is not bytes:
        if not isinstance(blob, (bytearray, memoryview)):
            got = type(blob).__name__
            raise DecodingError(f"corrupt payload at {place}: expected bytes, got {got}")
        blob = bytes(blob)
    if len(blob) < 2 or blob[0] != MAGIC:
        raise DecodingError(f"corrupt payload at {place}: not a durable_celery envelope")
    flags = blob[1]
    if flags & ~(COMPRESSED | ENCRYPTED):
        raise DecodingError(f"corrupt payload at {place}: unknown flags {flags:#04x}")
    compressed = bool(flags & COMPRESSED)
    if not flags & ENCRYPTED:
        if require_encryption:
            raise DecryptionError(
                f"payload at {place} is not encrypted but durable_require_encryption is on; "
                "refusing to read it"
            )
        return blob[2:], compressed
    return _decrypt(blob, place, keyring), compressed


def _decrypt(blob: bytes, place: Place, keyring: Keyring) -> bytes:
    end = 3 + (blob[2] if len(blob) > 2 else 0)
    if len(blob) < end + NONCE_SIZE + TAG_SIZE:
        raise DecodingError(f"corrupt payload at {place}: encrypted envelope is truncated")
    try:
        kid = blob[3:end].decode()
    except UnicodeDecodeError:
        raise DecodingError(f"corrupt payload at {place}: key id is not utf-8") from None
    cipher = keyring.opening(kid)
    if cipher is None:
        held = (
            "no encryption keys are configured" if not keyring else "the keyring does not hold it"
        )
        raise DecryptionError(
            f"payload at {place} is encrypted with key id {kid!r} but {held}; "
            f"add key {kid!r} to durable_encryption_keys"
        )
    nonce = blob[end : end + NONCE_SIZE]
    try:
        return cipher.decrypt(nonce, blob[end + NONCE_SIZE :], place.aad() + blob[:end])
    except InvalidTag:
        raise DecryptionError(
            f"payload at {place} does not decrypt with key id {kid!r}: the key's bytes differ from "
            "the ones it was written with, or the payload was altered or belongs to another "
            "run/entry"
        ) from None
