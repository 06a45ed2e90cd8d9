"""msgpack with extension types: Python values come back as themselves.

Plain ``None``, ``bool``, ``int``, ``float``, ``str``, ``bytes``, ``list`` and ``dict`` are packed
by msgpack's C packer with no Python call per value, which keeps common payloads cheap. Everything
else reaches :meth:`ExtensionTypes._default` and becomes an extension type. ``strict_types=True`` is
what sends tuples there (they stay tuples), and with it subclasses of the plain types come too: enum
members and registered classes are stored as themselves; any other subclass is stored as its base
type (``OrderedDict`` -> ``dict``, a namedtuple -> ``tuple``, a ``str`` subclass -> ``str``).
``bytearray`` and ``memoryview`` come back as ``bytes``. Dict order is kept as it is.

Packing is canonical: set members are ordered by their packed bytes, so the same value gives the
same bytes in every process whatever its hash seed. Containers inside an extension type are packed
by a fresh ``Packer``: one ``Packer`` cannot be re-entered from its own ``default`` hook.
"""

from __future__ import annotations

import functools
import struct
import uuid
from collections.abc import Callable
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from enum import Enum
from typing import Any

import msgpack
from msgpack import ExtType

from ..errors import DecodingError
from . import temporal
from .exceptions import encode_exception, rebuild_exception
from .names import qualified_name, resolve
from .registry import TypeRegistry, UserType

__all__ = ["ExtensionTypes", "Unstorable"]

(TUPLE, SET, FROZENSET, BIGINT, DATETIME, DATE, TIME, TIMEDELTA) = range(1, 9)
(DECIMAL, UUID, ENUM, COMPLEX, EXCEPTION, USER) = range(9, 15)

_COMPLEX = struct.Struct(">dd")
_new_ext = functools.partial(tuple.__new__, ExtType)
_INT64_MIN, _UINT64_MAX = -(2**63), 2**64 - 1


class Unstorable(TypeError):
    """Raised by the packer's hook; the codec turns it into an EncodingError naming the path."""

    def __init__(self, reason: str | None = None) -> None:
        super().__init__(reason or "unsupported type")
        self.reason = reason


class ExtensionTypes:
    """Packs and unpacks values for one :class:`TypeRegistry`. Thread-safe: no shared Packer."""

    def __init__(self, registry: TypeRegistry) -> None:
        self.registry = registry
        # Bound once: a bound method made per call is measurable on the hot path.
        self._default_hook = self._default
        self._ext = self._ext_hook
        self._enum_paths: dict[type, tuple[str, str]] = {}
        self._enum_classes: dict[tuple[str, str], type[Enum]] = {}
        self._encoders: dict[type, Callable[[Any], Any]] = {
            tuple: self._tuple,
            set: self._set,
            frozenset: self._frozenset,
            int: _int,
            datetime: lambda v: ExtType(DATETIME, temporal.pack_datetime(v)),
            date: lambda v: ExtType(DATE, temporal.pack_date(v)),
            time: lambda v: ExtType(TIME, temporal.pack_time(v)),
            timedelta: lambda v: ExtType(TIMEDELTA, temporal.pack_timedelta(v)),
            Decimal: lambda v: ExtType(DECIMAL, str(v).encode()),
            uuid.UUID: lambda v: ExtType(UUID, v.bytes),
            complex: lambda v: ExtType(COMPLEX, _COMPLEX.pack(v.real, v.imag)),
        }
        # Checked in order for subclasses; datetime before date, its base.
        self._subclass_encoders: tuple[tuple[type, Callable[[Any], Any]], ...] = (
            *((cls, self._encoders[cls]) for cls in (datetime, date, time, timedelta)),
            *((cls, self._encoders[cls]) for cls in (Decimal, uuid.UUID, set, frozenset)),
            (tuple, self._tuple),
            (int, lambda v: _int(int.__int__(v))),
            (float, float.__float__),
            (complex, self._encoders[complex]),
            (str, str.__str__),
            (bytes, lambda v: bytes(memoryview(v))),
            (dict, dict),
            (list, list),
        )
        self._decoders: dict[int, Callable[[bytes], Any]] = {
            TUPLE: lambda d: tuple(self.unpack(d)),
            SET: lambda d: set(self.unpack(d)),
            FROZENSET: lambda d: frozenset(self.unpack(d)),
            BIGINT: lambda d: int.from_bytes(d, "big", signed=True),
            DATETIME: temporal.unpack_datetime,
            DATE: temporal.unpack_date,
            TIME: temporal.unpack_time,
            TIMEDELTA: temporal.unpack_timedelta,
            DECIMAL: lambda d: Decimal(d.decode()),
            UUID: lambda d: uuid.UUID(bytes=d),
            COMPLEX: lambda d: complex(*_COMPLEX.unpack(d)),
            ENUM: self._unpack_enum,
            EXCEPTION: lambda d: rebuild_exception(self.unpack(d)),
            USER: self._unpack_user,
        }

    def pack(self, value: Any) -> bytes:
        """Canonical msgpack of ``value``; raises what the packer raised (see ``Unstorable``)."""
        packer = msgpack.Packer(default=self._default_hook, strict_types=True, use_bin_type=True)
        return packer.pack(value)  # type: ignore[no-any-return]

    def unpack(self, data: bytes) -> Any:
        """The value packed in ``data``; raises ``DecodingError`` or whatever msgpack raised."""
        return msgpack.unpackb(
            data, ext_hook=self._ext, strict_map_key=False, use_list=True, raw=False
        )

    def is_storable(self, value: Any) -> bool:
        try:
            self.pack(value)
        except Exception:
            return False
        return True

    def _default(self, obj: Any) -> Any:
        cls = type(obj)
        encoder = self._encoders.get(cls)
        if encoder is not None:
            return encoder(obj)
        user = self.registry.for_class(cls)
        if user is not None:
            return self._user(user, obj)
        if isinstance(obj, Enum):
            return self._enum(obj)
        if isinstance(obj, BaseException):
            return ExtType(EXCEPTION, self.pack(encode_exception(obj, self.is_storable)))
        for base, convert in self._subclass_encoders:
            if isinstance(obj, base):
                return convert(obj)
        raise Unstorable()

    def _tuple(self, value: tuple[Any, ...]) -> ExtType:
        # Every step call packs its arguments as tuples: ExtType's own constructor checks its
        # two fields in Python, which this code and type need not (measured: 0.4 us a tuple).
        return _new_ext((TUPLE, self.pack(list(value))))

    def _set(self, value: set[Any]) -> ExtType:
        return ExtType(SET, self._sorted_members(value))

    def _frozenset(self, value: frozenset[Any]) -> ExtType:
        return ExtType(FROZENSET, self._sorted_members(value))

    def _sorted_members(self, members: set[Any] | frozenset[Any]) -> bytes:
        header = msgpack.Packer().pack_array_header(len(members))
        return header + b"".join(sorted(self.pack(m) for m in members))  # type: ignore[no-any-return]

    def _enum(self, member: Enum) -> ExtType:
        cls = type(member)
        path = self._enum_paths.get(cls)
        if path is None:
            path = qualified_name(cls)
            if resolve(*path) is not cls:
                raise Unstorable(
                    f"enum {path[0]}.{path[1]} is not importable at module level, so it could not "
                    "be found again by name; define it at module level"
                )
            self._enum_paths[cls] = path
        if cls._member_map_.get(member._name_) is member:
            return ExtType(ENUM, self.pack([*path, member._name_]))
        # Composite Flag values (A|B) have no member name; their value rebuilds them.
        return ExtType(ENUM, self.pack([*path, None, member._value_]))

    def _unpack_enum(self, data: bytes) -> Enum:
        module, qualname, name, *value = self.unpack(data)
        cls = self._enum_classes.get((module, qualname))
        if cls is None:
            found = resolve(module, qualname)
            if not (isinstance(found, type) and issubclass(found, Enum)):
                raise DecodingError(
                    f"payload holds a member of enum {module}.{qualname}, which cannot be "
                    "imported; deploy the code that defines it"
                )
            cls = self._enum_classes[(module, qualname)] = found
        try:
            return cls[name] if name is not None else cls(*value)
        except (KeyError, ValueError, TypeError):
            shown = name if name is not None else value
            raise DecodingError(
                f"payload holds {module}.{qualname}.{shown}, which that enum no longer has"
            ) from None

    def _user(self, user: UserType, obj: Any) -> ExtType:
        try:
            data = user.encode(obj)
        except Exception as err:
            raise Unstorable(f"its registered encoder raised {type(err).__name__}: {err}") from err
        return ExtType(USER, self.pack([user.name, data]))

    def _unpack_user(self, data: bytes) -> Any:
        name, fields = self.unpack(data)
        user = self.registry.for_name(name)
        if user is None:
            raise DecodingError(
                f"payload holds a value of type {name!r}, which is not registered in this process; "
                "register it with durable.register_type(...) before decoding"
            )
        try:
            return user.decode(fields)
        except Exception as err:
            raise DecodingError(
                f"payload holds a {name!r} that its registered decoder could not rebuild: "
                f"{type(err).__name__}: {err}"
            ) from err

    def _ext_hook(self, code: int, data: bytes) -> Any:
        decoder = self._decoders.get(code)
        if decoder is None:
            raise DecodingError(f"corrupt payload: unknown extension type {code}")
        return decoder(data)


def _int(value: int) -> int | ExtType:
    """Ints msgpack cannot hold (beyond 64 bits) as two's-complement big-endian bytes."""
    if _INT64_MIN <= value <= _UINT64_MAX:
        return value
    return ExtType(BIGINT, value.to_bytes((value.bit_length() + 8) // 8, "big", signed=True))
