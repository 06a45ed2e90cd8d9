"""The Lua scripts of the Redis store, loaded from ``lua/*.lua`` and registered on a client.

Each script is registered with redis-py's ``register_script``: calls use EVALSHA and fall back
to loading the script when the server does not know it (after a restart or failover).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from importlib.resources import files
from typing import Any

__all__ = ["SCRIPT_NAMES", "Scripts", "lua_source"]

SCRIPT_NAMES = (
    "create_run",
    "append_fenced",
    "record_outcome",
    "record_and_begin",
    "finish_pass",
    "acquire_lease",
    "begin_pass",
    "release_lease",
    "request_wake",
    "set_status",
    "add_timer",
    "claim_due_timers",
    "register_hook",
    "replace_hook",
    "delete_hook",
    "push_buffered_event",
    "pop_buffered_event",
)


@cache
def lua_source(name: str) -> str:
    if name not in SCRIPT_NAMES:
        raise ValueError(f"unknown Lua script {name!r}; known: {', '.join(SCRIPT_NAMES)}")
    return (files(__package__) / "lua" / f"{name}.lua").read_text(encoding="utf-8")


@dataclass(frozen=True, slots=True)
class Scripts:
    """One registered script per name. Values are redis-py ``Script`` objects (callable with
    ``keys=`` and ``args=``); typed ``Any`` because redis-py types them as maybe-awaitable."""

    create_run: Any
    append_fenced: Any
    record_outcome: Any
    record_and_begin: Any
    finish_pass: Any
    acquire_lease: Any
    begin_pass: Any
    release_lease: Any
    request_wake: Any
    set_status: Any
    add_timer: Any
    claim_due_timers: Any
    register_hook: Any
    replace_hook: Any
    delete_hook: Any
    push_buffered_event: Any
    pop_buffered_event: Any

    @classmethod
    def register(cls, client: Any) -> Scripts:
        return cls(**{name: client.register_script(lua_source(name)) for name in SCRIPT_NAMES})
