"""zlib compression of packed payloads, used only when it pays.

Small payloads are the common case (ids, flags, short dicts) and zlib would only add its header
and CPU time, so only payloads of at least ``threshold`` bytes are tried, and the compressed form is
kept only when it is actually smaller. The envelope records which, so decoding never guesses.
"""

from __future__ import annotations

import zlib

from ..errors import DecodingError

__all__ = ["compress", "decompress"]


def compress(data: bytes, threshold: int) -> tuple[bytes, bool]:
    """``(bytes to store, whether they are compressed)``."""
    if len(data) < threshold:
        return data, False
    packed = zlib.compress(data)
    if len(packed) < len(data):
        return packed, True
    return data, False


def decompress(data: bytes) -> bytes:
    try:
        return zlib.decompress(data)
    except zlib.error as err:
        raise DecodingError(f"corrupt payload: compressed body does not inflate ({err})") from None
