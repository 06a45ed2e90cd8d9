"""Saved logs of past runs must replay with the current code (STYLE.md rule 7)."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest
from celery import Celery

from durable_celery import Durable
from durable_celery.codec import Codec
from durable_celery.replay.events import Event
from durable_celery.testing import replay_history

from .workflows import build

HERE = Path(__file__).parent
SAVED = sorted(HERE.glob("*.json"))


def _meta_value(value: object) -> object:
    if isinstance(value, dict) and set(value) == {"bytes"}:
        return base64.b64decode(value["bytes"])  # see record.py
    return value


def load(path: Path) -> list[Event]:
    return [
        Event(
            e["id"],
            e["kind"],
            e["cid"],
            {k: _meta_value(v) for k, v in e["meta"].items()},
            None if e["payload"] is None else base64.b64decode(e["payload"]),
        )
        for e in json.loads(path.read_text())
    ]


def test_there_are_saved_histories_to_replay() -> None:
    assert len(SAVED) >= 3


@pytest.mark.parametrize("path", SAVED, ids=[p.stem for p in SAVED])
def test_a_saved_history_replays_to_its_recorded_result_without_new_work(path: Path) -> None:
    durable, _ = build()
    history = load(path)
    run_id = f"saved-{path.stem.split('-', 1)[1]}"
    report = replay_history(history, durable.registry, Codec(registry=durable.types), run_id)
    assert report.outcome == "completed", report.error
    assert report.matches_record is True
    assert report.next_commands == []
    assert report.value["summary"]["items"] == (400, 500, 300)  # a tuple stays a tuple
    assert report.value["decision"] == {"approved": True}


def test_a_changed_workflow_is_caught_by_the_saved_history() -> None:
    changed = Durable(Celery("changed", broker="memory://"))

    @changed.workflow(name="h.checkout")
    def checkout(items: list[str]) -> dict[str, object]:  # the fan-out and the rest removed
        return {"summary": None}

    report = replay_history(load(SAVED[0]), changed.registry, Codec(), "saved-inline")
    assert report.outcome == "diverged"
    assert "without making calls the log recorded" in str(report.error)
