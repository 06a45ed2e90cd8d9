"""Exceptions as data, and back: how a step's error crosses the log.

An exception is stored as its type's import path, ``str(exc)``, its ``args`` (each arg the codec
cannot store is replaced by its ``repr``) and its traceback text. ``__cause__``, ``__context__``,
notes and extra attributes are not kept.

Rebuilding gives the original type only when that is safe and faithful: the type is an ``Exception``
subclass (never ``KeyboardInterrupt``/``SystemExit``-like ``BaseException``), it can be found by
import path, ``cls(*args)`` works, and the result has the same ``str()``. Otherwise the result is
a :class:`~durable_celery.errors.StepError` carrying the type name, message and traceback. Either
way the recorded traceback text is attached as ``__durable_traceback__``.

Rebuilding may import the module that defines the type, as Celery does to find a task; this is why
payloads must come from a trusted log (encrypted payloads are authenticated).
"""

from __future__ import annotations

import contextlib
import traceback as tb
from collections.abc import Callable, Mapping
from typing import Any

import msgpack

from ..errors import DecodingError, StepError
from .names import qualified_name, resolve

__all__ = ["TRACEBACK_ATTRIBUTE", "encode_exception", "rebuild_exception"]

TRACEBACK_ATTRIBUTE = "__durable_traceback__"


def encode_exception(
    exc: BaseException, is_storable: Callable[[Any], bool] | None = None
) -> dict[str, Any]:
    """``exc`` as a dict of storable values; ``is_storable`` says which args may be kept as is."""
    check = is_storable or _is_plain
    module, qualname = qualified_name(type(exc))
    args: list[Any] = list(exc.args)
    if isinstance(exc, StepError):
        # StepError's args are its one-line message; keep what rebuilds it field for field instead.
        args = [exc.type_name, exc.message, exc.traceback]
    return {
        "module": module,
        "qualname": qualname,
        "message": _safe_str(exc),
        "args": [arg if check(arg) else _safe_repr(arg) for arg in args],
        "traceback": _traceback_text(exc),
    }


def rebuild_exception(data: Mapping[str, Any]) -> BaseException:
    """The exception ``data`` describes (see :func:`encode_exception`); never raises it."""
    try:
        module, qualname = str(data["module"]), str(data["qualname"])
        message, text = str(data["message"]), str(data["traceback"])
        args = list(data["args"])
    except (KeyError, TypeError, ValueError) as err:
        raise DecodingError(f"corrupt payload: malformed exception record ({err})") from None
    exc = _construct(module, qualname, message, args)
    if exc is None:
        type_name = qualname if module == "builtins" else f"{module}.{qualname}"
        exc = StepError(type_name, message, text)
    # An exception type may forbid new attributes; the text is a courtesy, not worth failing for.
    with contextlib.suppress(Exception):
        setattr(exc, TRACEBACK_ATTRIBUTE, text)
    return exc


def _construct(module: str, qualname: str, message: str, args: list[Any]) -> BaseException | None:
    cls = resolve(module, qualname)
    if not isinstance(cls, type) or not issubclass(cls, Exception):
        return None
    try:
        exc = cls(*args)
    except Exception:
        return None
    # OSError(2, ...) builds a FileNotFoundError: a subclass is still the recorded type.
    if not isinstance(exc, cls) or _safe_str(exc) != message:
        return None
    return exc


def _traceback_text(exc: BaseException) -> str:
    earlier = getattr(exc, TRACEBACK_ATTRIBUTE, None)
    now = "".join(tb.format_exception(exc)) if exc.__traceback__ is not None else ""
    if isinstance(earlier, str) and earlier:
        # A rebuilt error raised again: where it first happened matters most, so it comes first.
        return f"{earlier}\nRaised again:\n{now}" if now else earlier
    return now


def _is_plain(value: Any) -> bool:
    try:
        msgpack.packb(value)
    except Exception:
        return False
    return True


def _safe_str(exc: BaseException) -> str:
    try:
        return str(exc)
    except Exception:
        return _safe_repr(exc)


def _safe_repr(value: Any) -> str:
    try:
        return repr(value)
    except Exception:
        return f"<{type(value).__qualname__} object (repr failed)>"
