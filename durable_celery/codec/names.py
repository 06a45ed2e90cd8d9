"""Classes by import path: how enums and exceptions are named in a payload and found again.

A payload names a class by ``(module, qualname)`` rather than one dotted string, because a dotted
string cannot tell ``pkg.mod.Outer.Inner`` (a nested class) from a module named ``pkg.mod.Outer``.
"""

from __future__ import annotations

import builtins
import importlib
import sys
from typing import Any

__all__ = ["display_name", "qualified_name", "resolve"]


def qualified_name(cls: type) -> tuple[str, str]:
    """``(module, qualname)`` of ``cls``."""
    return cls.__module__, cls.__qualname__


def display_name(cls: type) -> str:
    """How messages name a type: builtins bare (``ValueError``), others by full import path."""
    module, qualname = qualified_name(cls)
    return qualname if module == "builtins" else f"{module}.{qualname}"


def resolve(module: str, qualname: str) -> Any | None:
    """The object at ``module`` / ``qualname``, or ``None`` when it cannot be found.

    Imports ``module`` when it is not loaded yet (a worker may decode a value before it imported the
    module that defines its type). Never raises: any failure to import or look up gives ``None``.
    """
    if not module or not qualname or "<locals>" in qualname:
        return None
    if module == "builtins":
        target: Any = builtins
    else:
        target = sys.modules.get(module)
        if target is None:
            try:
                target = importlib.import_module(module)
            except Exception:  # any import-time failure means "not importable"
                return None
    for part in qualname.split("."):
        target = getattr(target, part, None)
        if target is None:
            return None
    return target
