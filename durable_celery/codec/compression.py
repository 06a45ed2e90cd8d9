"""zlib compression of packed payloads, used only when it pays.

Small payloads are the common case (ids, flags, short dicts) and zlib would only add its header
and CPU time, so only payloads of at least ``threshold`` bytes are tried. Inflating costs on every
read (a mutable result is decoded again on every replay), so a payload is stored compressed only
when that saves at least a quarter of it.

A probe of the first 512 bytes decides first, so incompressible data (random tokens, base64,
already-compressed bytes) costs a small deflate, not a full one. Measured on this project's
bench machine: text and source code deflate to 0.5-0.6 of the probe, JSON-like values to
0.25 or less, base64 of random bytes to 0.8 or more; a 2 KiB probe moves those figures by
less than 0.1 and costs 2.5 times as much (21 against 8 us), on every stored value above the
threshold. The probe's compressor has a 2 KiB window and a small hash table: most of the
default settings' cost is setting up their 256 KiB of state. Level 1: on typical JSON-like
values it is several times faster than the default for the same ratio. The envelope records
whether a payload is compressed, so decoding never guesses.

Even the probe costs 10-25 us per value on incompressible data, on every step's input and result.
Payloads of one source (a step's results, its inputs) are mostly alike, so a :class:`Compressor`
remembers a source whose payload did not compress and stores its next ``_SKIP`` payloads as they
are, unprobed, before it tries again: what btrfs does for a file after a write that did not
compress. A source that turns compressible costs at most ``_SKIP`` payloads stored whole.
"""

from __future__ import annotations

import zlib

from ..errors import DecodingError

__all__ = ["Compressor", "compress", "decompress"]


_LEVEL = 1
_PROBE = 512
_KEEP = 0.75  # store compressed only at or below three quarters of the original size
_SKIP = 15  # payloads of a source stored unprobed after one of its payloads did not compress
_SOURCES = 4096  # sources remembered; beyond, all are forgotten (each costs one probe again)


class Compressor:
    """:func:`compress` with a memory of the sources whose payloads do not compress.

    Safe to share between threads: a race costs at most a probe more or less.
    """

    def __init__(self, threshold: int) -> None:
        self.threshold = threshold
        self._skips: dict[tuple[str, str], int] = {}

    def compress(self, data: bytes, kind: str = "", source: str = "") -> tuple[bytes, bool]:
        """``(bytes to store, whether they are compressed)``; ``kind`` and ``source`` name where
        ``data`` comes from (e.g. ``"step_completed"``, ``"result of step charge"``)."""
        if len(data) < self.threshold:
            return data, False  # most payloads: no source looked up
        key = (kind, source)
        skips = self._skips.get(key, 0)
        if skips:
            self._skips[key] = skips - 1
            return data, False
        body, compressed = compress(data, self.threshold)
        if not compressed:
            if len(self._skips) >= _SOURCES:
                self._skips.clear()
            self._skips[key] = _SKIP
        return body, compressed


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
