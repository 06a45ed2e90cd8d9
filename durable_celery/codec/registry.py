"""User types the codec may store, each under a stable name.

The name, not the class object, is what the log records, so a class may move between modules as long
as it keeps its registered name. Lookup is by exact class: a subclass of a registered class is a
different type and needs its own registration (otherwise it would come back as its base).
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from typing import Any

from ..errors import ConfigurationError

__all__ = ["TypeRegistry", "UserType"]

# Types the codec stores by itself; registering one would never be consulted.
_BUILTIN_TYPES: frozenset[type] = frozenset(
    {type(None), bool, int, float, complex, str, bytes, bytearray, memoryview, list, dict, tuple}
    | {set, frozenset, datetime, date, time, timedelta, Decimal, uuid.UUID}
)


@dataclass(frozen=True)
class UserType:
    """One registration: ``encode`` turns an instance into storable data, ``decode`` reverses it."""

    cls: type
    name: str
    encode: Callable[[Any], Any]
    decode: Callable[[Any], Any]


class TypeRegistry:
    """User types by class (to encode) and by name (to decode)."""

    def __init__(self) -> None:
        self._by_class: dict[type, UserType] = {}
        self._by_name: dict[str, UserType] = {}

    def register(
        self,
        cls: type,
        *,
        name: str | None = None,
        encode: Callable[[Any], Any] | None = None,
        decode: Callable[[Any], Any] | None = None,
    ) -> None:
        """Let the codec store instances of ``cls``.

        Dataclasses default to their ``init`` fields (each field stored by the codec, so nested
        registered types keep their type) and ``cls(**fields)``; pydantic-style models (with
        ``model_dump`` / ``model_validate``) default to those. Any other class needs both
        ``encode`` and ``decode``. ``name`` defaults to ``module.qualname``; registering it again
        for the same class replaces the functions, for another class is an error.
        """
        if not isinstance(cls, type):
            raise ConfigurationError(f"register_type({cls!r}): expected a class")
        if cls in _BUILTIN_TYPES:
            raise ConfigurationError(
                f"register_type({cls.__qualname__}): {cls.__qualname__} is stored natively; "
                "register your own classes only"
            )
        name = name if name is not None else f"{cls.__module__}.{cls.__qualname__}"
        if not name:
            raise ConfigurationError(f"register_type({cls.__qualname__}): name must not be empty")
        encode = encode or _default_encoder(cls)
        decode = decode or _default_decoder(cls)
        if encode is None or decode is None:
            raise ConfigurationError(
                f"register_type({cls.__qualname__}): it is neither a dataclass nor a "
                "pydantic-style model (model_dump/model_validate); pass both encode= and decode="
            )
        existing = self._by_name.get(name)
        if existing is not None and existing.cls is not cls:
            raise ConfigurationError(
                f"register_type({cls.__qualname__}): the name {name!r} is already taken by "
                f"{existing.cls.__module__}.{existing.cls.__qualname__}; pass another name="
            )
        previous = self._by_class.get(cls)
        if previous is not None and previous.name != name:
            del self._by_name[previous.name]
        entry = UserType(cls, name, encode, decode)
        self._by_class[cls] = entry
        self._by_name[name] = entry

    def for_class(self, cls: type) -> UserType | None:
        return self._by_class.get(cls)

    def for_name(self, name: str) -> UserType | None:
        return self._by_name.get(name)

    def __contains__(self, cls: object) -> bool:
        return cls in self._by_class

    def __len__(self) -> int:
        return len(self._by_class)


def _default_encoder(cls: type) -> Callable[[Any], Any] | None:
    if dataclasses.is_dataclass(cls):
        # Not dataclasses.asdict: it would turn nested dataclasses into dicts and lose their type.
        names = tuple(f.name for f in dataclasses.fields(cls) if f.init)
        return lambda obj: {n: getattr(obj, n) for n in names}
    if _is_model(cls):
        return lambda obj: obj.model_dump()
    return None


def _default_decoder(cls: type) -> Callable[[Any], Any] | None:
    if dataclasses.is_dataclass(cls):
        return lambda fields: cls(**fields)
    if _is_model(cls):
        validate: Callable[[Any], Any] = getattr(cls, "model_validate")  # noqa: B009
        return validate
    return None


def _is_model(cls: type) -> bool:
    """Pydantic v2, or anything shaped like it: dumps to plain data, validates back."""
    dump, validate = getattr(cls, "model_dump", None), getattr(cls, "model_validate", None)
    return callable(dump) and callable(validate)
