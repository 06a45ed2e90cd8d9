"""Where in a value the codec gave up, for the EncodingError message.

Only runs after packing failed: the hot path never walks a value in Python. Walking re-packs each
child to find the failing one, then descends into it, so the cost is paid once, on the error path.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from ..errors import EncodingError
from .names import display_name
from .registry import TypeRegistry
from .types import Unstorable

__all__ = ["refusal"]

_HINT = "register it with durable.register_type(...) or pass a supported value"


def refusal(
    value: Any, label: str, error: Exception, pack: Callable[[Any], bytes], registry: TypeRegistry
) -> EncodingError:
    """An EncodingError saying which part of ``value`` (labelled ``label``) ``pack`` refused."""
    path, culprit, cause = _locate(value, "", error, pack, registry, {id(value)})
    where = f"field {path!r}" if path else "value"
    if isinstance(cause, Unstorable) and cause.reason is None:
        reason = f"; {_HINT}"
    elif isinstance(cause, Unstorable):
        reason = f": {cause.reason}"
    else:
        reason = f": {type(cause).__name__}: {cause}"
    return EncodingError(
        f"{label}: {where} of type {display_name(type(culprit))} cannot be stored{reason}"
    )


def _locate(
    value: Any,
    path: str,
    error: Exception,
    pack: Callable[[Any], bytes],
    registry: TypeRegistry,
    seen: set[int],
) -> tuple[str, Any, Exception]:
    try:
        children = list(_children(value, registry))
    except Exception as err:  # a registered encoder failed: the value itself is the culprit
        return path, value, Unstorable(f"its registered encoder raised {type(err).__name__}: {err}")
    for step, child in children:
        try:
            pack(child)
        except Exception as child_error:
            child_path = _join(path, step)
            if id(child) in seen:  # refers to itself: descending again would never end
                return child_path, child, Unstorable("it contains itself")
            return _locate(child, child_path, child_error, pack, registry, seen | {id(child)})
    return path, value, error


def _children(value: Any, registry: TypeRegistry) -> Iterator[tuple[str, Any]]:
    if isinstance(value, dict):
        for key, item in value.items():
            yield "[<key>]", key
            yield _key_step(key), item
    elif isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            yield f"[{index}]", item
    elif isinstance(value, (set, frozenset)):
        for member in value:
            yield "[<member>]", member
    else:
        user = registry.for_class(type(value))
        if user is not None:
            data = user.encode(value)
            if isinstance(data, dict):
                yield from ((_key_step(k), item) for k, item in data.items())
            else:
                yield "", data


def _key_step(key: Any) -> str:
    return f".{key}" if isinstance(key, str) and key.isidentifier() else f"[{key!r}]"


def _join(path: str, step: str) -> str:
    return step[1:] if not path and step.startswith(".") else path + step
