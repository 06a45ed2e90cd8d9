"""zlib compression of packed payloads, used only when it pays.

Small payloads are the common case (ids, flags, short dicts) and zlib would only add its header
and CPU time, so only payloads of at least ``threshold`` bytes are tried. Inflating costs on every
read (a mutable result is decoded again on every replay), so a payload is stored compressed only
when that saves at least a quarter of it: a 2 KiB probe decides first, so incompressible data
(random tokens, already-compressed bytes) costs a small deflate, not a full one. The probe's
compressor has a window just wide enough for the probe (2 KiB) and a small hash table: the same
ratio as the default settings, and about a third of the cost, most of which is setting up the
default's 256 KiB of state. Level 1:
on typical JSON-like values it is several times faster than the default for the same ratio. The
envelope records whether a payload is compressed, so decoding never guesses.
"""

from __future__ import annotations

import zlib

from ..errors import DecodingError

__all__ = ["compress", "decompress"]


_LEVEL = 1
_PROBE = 2048
_KEEP = 0.75  # store compressed only at or below three quarters of the original size


def compress(data: bytes, threshold: int) -> tuple[bytes, bool]:
    """``(bytes to store, whether they are compressed)``."""
    if len(data) < threshold:
        return data, False
    if len(data) > 2 * _PROBE and _probe_size(data[:_PROBE]) > _KEEP * _PROBE:
        return data, False
    packed = zlib.compress(data, _LEVEL)
    if len(packed) <= _KEEP * len(data):
        return packed, True
    return data, False


def _probe_size(probe: bytes) -> int:
    """Deflated size of ``probe`` with a 2 KiB window (wbits 11) and memLevel 5."""
    deflater = zlib.compressobj(_LEVEL, zlib.DEFLATED, 11, 5)
    return len(deflater.compress(probe)) + len(deflater.flush())


def decompress(data: bytes) -> bytes:
    try:
        return zlib.decompress(data)
    except zlib.error as err:
        raise DecodingError(f"corrupt payload: compressed body does not inflate ({err})") from None
