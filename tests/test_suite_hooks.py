"""The suite's own hooks (tests/conftest.py) do what they say."""

from __future__ import annotations

import sys
from types import SimpleNamespace
from typing import Any


def test_a_failed_import_from_a_frame_without_builtins_does_not_fail_a_test() -> None:
    # The artefact as CPython reports it: a KeyError('__import__') raised in a frame whose
    # globals hold no builtins, handed to sys.unraisablehook. Without the suite's hook, pytest
    # reports this test as failed.
    namespace: dict[str, Any] = {"__builtins__": {}}
    exec("def no_builtins(error):\n    raise error\n", namespace)
    try:
        namespace["no_builtins"](KeyError("__import__"))
    except KeyError as error:
        caught = error
    assert caught.__traceback__ is not None and caught.__traceback__.tb_next is not None
    # The fields of sys.UnraisableHookArgs, which cannot be built from Python.
    unraisable = SimpleNamespace(
        exc_type=KeyError,
        exc_value=caught,
        exc_traceback=caught.__traceback__.tb_next,  # the frame without builtins
        err_msg=None,
        object=None,
    )
    sys.unraisablehook(unraisable)  # type: ignore[arg-type]
