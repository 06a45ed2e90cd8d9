"""The entry types: frozen values, each with a meta of its own."""

from __future__ import annotations

import dataclasses

import pytest

from durable_celery.replay.events import STEP_COMPLETED, Event, NewEvent


def test_entries_are_frozen_values_each_with_its_own_meta() -> None:
    event = Event("1-1", STEP_COMPLETED, "s1", {"attempt": 1}, b"p")
    new = NewEvent(STEP_COMPLETED, "s1", {"attempt": 1}, b"p")
    for entry, field in ((event, "kind"), (new, "cid"), (event, "meta"), (new, "payload")):
        with pytest.raises(dataclasses.FrozenInstanceError):
            setattr(entry, field, None)
    assert event == Event("1-1", STEP_COMPLETED, "s1", {"attempt": 1}, b"p")
    assert event != Event("1-2", STEP_COMPLETED, "s1", {"attempt": 1}, b"p")
    assert new == NewEvent(kind=STEP_COMPLETED, cid="s1", meta={"attempt": 1}, payload=b"p")
    assert dataclasses.replace(event, cid="s2").cid == "s2"
    assert dataclasses.astuple(new) == (STEP_COMPLETED, "s1", {"attempt": 1}, b"p")
    first, second = Event("1-1", "marker"), NewEvent("marker")
    assert (first.cid, first.meta, first.payload) == ("", {}, None)
    assert first.meta is not Event("1-1", "marker").meta
    assert second.meta is not NewEvent("marker").meta
    assert repr(second) == "NewEvent(kind='marker', cid='', meta={}, payload=None)"
    assert first.millis == 1
