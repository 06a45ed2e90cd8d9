"""Commands: the new work a workflow asks for (imperative), before the host records it.

Each command kind has its own correlation-id prefix and sequence, so adding a timer to a workflow
does not renumber its steps. A command's ``identity()`` is what replay compares against the
recorded ``*_scheduled`` entry to detect nondeterminism.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

from ..codec.hashing import same_arguments
from . import events as ev

__all__ = ["Command", "ScheduleStep", "StartTimer", "AwaitEvent", "StartChild", "RecordMarker"]


@dataclass(frozen=True)
class Command:
    cid: str
    prefix: ClassVar[str] = ""
    scheduled_kind: ClassVar[str] = ""

    def identity(self) -> dict[str, Any]:
        """The fields that must match the recorded entry on replay."""
        return {}

    def matches(self, meta: dict[str, Any]) -> bool:
        """Whether a recorded entry's ``meta`` is this call's (its identity, field by field)."""
        return all(meta.get(k) == v for k, v in self.identity().items())

    def describe(self) -> str:
        return f"{self.scheduled_kind} {self.cid}"


@dataclass(frozen=True)
class ScheduleStep(Command):
    name: str = ""
    args: tuple[Any, ...] = ()
    kwargs: dict[str, Any] = field(default_factory=dict)
    fingerprint: str = ""
    #: ``(args, kwargs)`` as :meth:`Codec.pack` made them for the fingerprint (kwargs sorted):
    #: the host seals these bytes rather than packing the arguments again.
    packed: bytes = field(default=b"", compare=False, repr=False)
    prefix: ClassVar[str] = "s"
    scheduled_kind: ClassVar[str] = ev.STEP_SCHEDULED

    def identity(self) -> dict[str, Any]:
        return {"name": self.name, "h": self.fingerprint}

    def matches(self, meta: dict[str, Any]) -> bool:
        """Also true for an argument hash recorded the way earlier versions hashed."""
        return meta.get("name") == self.name and same_arguments(
            meta.get("h"), self.packed, self.fingerprint
        )

    def describe(self) -> str:
        return f"step {self.name!r} (argument hash {self.fingerprint})"


@dataclass(frozen=True)
class StartTimer(Command):
    seconds: float = 0.0
    prefix: ClassVar[str] = "t"
    scheduled_kind: ClassVar[str] = ev.TIMER_STARTED

    def identity(self) -> dict[str, Any]:
        return {}

    def describe(self) -> str:
        return f"timer of {self.seconds:g}s"


@dataclass(frozen=True)
class AwaitEvent(Command):
    key: str = ""
    timeout: float | None = None
    prefix: ClassVar[str] = "e"
    scheduled_kind: ClassVar[str] = ev.EVENT_AWAITED

    def identity(self) -> dict[str, Any]:
        return {"key": self.key}

    def describe(self) -> str:
        return f"wait for event {self.key!r}"


@dataclass(frozen=True)
class StartChild(Command):
    workflow: str = ""
    child_run_id: str = ""
    args: tuple[Any, ...] = ()
    kwargs: dict[str, Any] = field(default_factory=dict)
    detached: bool = False
    prefix: ClassVar[str] = "c"
    scheduled_kind: ClassVar[str] = ev.CHILD_STARTED

    def identity(self) -> dict[str, Any]:
        return {"name": self.workflow}

    def describe(self) -> str:
        return f"child workflow {self.workflow!r}"


@dataclass(frozen=True)
class RecordMarker(Command):
    """A value decided once and then read back from the log (patches, side effects)."""

    name: str = ""
    value: Any = None
    prefix: ClassVar[str] = "m"
    scheduled_kind: ClassVar[str] = ev.MARKER

    def identity(self) -> dict[str, Any]:
        return {"name": self.name}

    def describe(self) -> str:
        return f"marker {self.name!r}"
