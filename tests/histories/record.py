"""Write the saved histories: ``python -m tests.histories.record`` (only for new event shapes)."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

from durable_celery.replay.events import Event
from durable_celery.testing import WorkflowTestEnvironment

from .workflows import build

HERE = Path(__file__).parent


def to_json(history: list[Event]) -> list[dict[str, Any]]:
    return [
        {
            "id": e.entry_id,
            "kind": e.kind,
            "cid": e.cid,
            "meta": e.meta,
            "payload": None if e.payload is None else base64.b64encode(e.payload).decode(),
        }
        for e in history
    ]


def record(mode: str) -> Path:
    durable, workflows = build()
    env = WorkflowTestEnvironment(durable, step_execution=mode, start=1_800_000_000.0)
    handle = workflows["checkout"].start(["book", "flaky", "mug"], run_id=f"saved-{mode}")
    env.run_until_idle()
    env.advance(60)
    durable.send_event("review:book", {"approved": True})
    env.run_until_idle()
    env.result(handle)
    path = HERE / f"checkout-{mode}.json"
    path.write_text(json.dumps(to_json(durable.history(handle.run_id)), indent=1) + "\n")
    return path


if __name__ == "__main__":
    for mode in ("inline", "dispatch"):
        print(record(mode))
