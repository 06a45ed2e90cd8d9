"""Dates and times as extension payloads, keeping what makes them themselves.

Aware values keep their zone: a ``zoneinfo.ZoneInfo`` by key name (so DST rules survive), a
``datetime.timezone`` by offset and name, and any other ``tzinfo`` (pytz, dateutil) as the fixed
offset it had for that value -- the instant is exact, the zone's future rules are not kept. Naive
values stay naive. ``fold`` is kept, so the repeated hour of a DST change round-trips.
"""

from __future__ import annotations

import struct
from datetime import date, datetime, time, timedelta, timezone, tzinfo
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from ..errors import DecodingError

__all__ = [
    "pack_date",
    "pack_datetime",
    "pack_time",
    "pack_timedelta",
    "unpack_date",
    "unpack_datetime",
    "unpack_time",
    "unpack_timedelta",
]

_DATETIME = struct.Struct(">HBBBBBIB")  # year month day hour minute second microsecond fold
_TIME = struct.Struct(">BBBIB")  # hour minute second microsecond fold
_TIMEDELTA = struct.Struct(">iII")  # days seconds microseconds, as timedelta normalises them
_DATE = struct.Struct(">I")  # proleptic ordinal
_OFFSET = struct.Struct(">q")  # microseconds east of UTC

# The tz suffix starts with one tag byte.
_NAIVE, _OFFSET_ONLY, _NAMED_OFFSET, _ZONE = 0, 1, 2, 3


def pack_datetime(value: datetime) -> bytes:
    head = _DATETIME.pack(
        value.year,
        value.month,
        value.day,
        value.hour,
        value.minute,
        value.second,
        value.microsecond,
        value.fold,
    )
    return head + _pack_tz(value.tzinfo, value.utcoffset())


def unpack_datetime(data: bytes) -> datetime:
    year, month, day, hour, minute, second, micro, fold = _DATETIME.unpack_from(data)
    tz = _unpack_tz(data[_DATETIME.size :])
    return datetime(year, month, day, hour, minute, second, micro, tzinfo=tz, fold=fold)


def pack_time(value: time) -> bytes:
    head = _TIME.pack(value.hour, value.minute, value.second, value.microsecond, value.fold)
    return head + _pack_tz(value.tzinfo, value.utcoffset())


def unpack_time(data: bytes) -> time:
    hour, minute, second, micro, fold = _TIME.unpack_from(data)
    return time(hour, minute, second, micro, tzinfo=_unpack_tz(data[_TIME.size :]), fold=fold)


def pack_date(value: date) -> bytes:
    return _DATE.pack(value.toordinal())


def unpack_date(data: bytes) -> date:
    (ordinal,) = _DATE.unpack(data)
    return date.fromordinal(ordinal)


def pack_timedelta(value: timedelta) -> bytes:
    return _TIMEDELTA.pack(value.days, value.seconds, value.microseconds)


def unpack_timedelta(data: bytes) -> timedelta:
    days, seconds, micro = _TIMEDELTA.unpack(data)
    return timedelta(days, seconds, micro)


def _pack_tz(tz: tzinfo | None, offset: timedelta | None) -> bytes:
    if tz is None:
        return bytes((_NAIVE,))
    if isinstance(tz, ZoneInfo) and tz.key is not None:
        return bytes((_ZONE,)) + tz.key.encode()
    if offset is None:
        # A tzinfo that gives no offset makes the value naive by definition (datetime docs).
        return bytes((_NAIVE,))
    micros = _OFFSET.pack(offset // timedelta(microseconds=1))
    if isinstance(tz, timezone):
        name = tz.tzname(None)
        if name != timezone(offset).tzname(None):
            return bytes((_NAMED_OFFSET,)) + micros + name.encode()
    return bytes((_OFFSET_ONLY,)) + micros


def _unpack_tz(suffix: bytes) -> tzinfo | None:
    tag, rest = suffix[0], suffix[1:]
    if tag == _NAIVE:
        return None
    if tag == _ZONE:
        key = rest.decode()
        try:
            return ZoneInfo(key)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise DecodingError(
                f"payload holds a datetime in time zone {key!r}, which this process does not know; "
                "install the tzdata package or update the system zone database"
            ) from exc
    (micros,) = _OFFSET.unpack_from(rest)
    offset = timedelta(microseconds=micros)
    if tag == _OFFSET_ONLY:
        return timezone(offset)
    if tag == _NAMED_OFFSET:
        return timezone(offset, rest[_OFFSET.size :].decode())
    raise DecodingError(f"corrupt payload: unknown time zone tag {tag}")
