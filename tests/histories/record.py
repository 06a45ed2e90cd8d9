"""Write the saved histories: ``python -m tests.histories.record NAME MODE`` (only for new event
shapes, under a new NAME: the files already saved stay, as the logs of older versions).

Saved so far: ``inline`` and ``dispatch`` (every step as step_scheduled + its outcome), and
``inline-single`` (a step run inline and settled in its pass as one entry).
"""

from __future__ import annotations

import base64
import json
import sys
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
            "meta": {k: _json_value(v) for k, v in e.meta.items()},
            "payload": None if e.payload is None else base64.b64encode(e.payload).decode(),
        }
        for e in history
    ]


def _json_value(value: Any) -> Any:
    # Meta holds bytes in one place: an inline step's sealed input ("in").
    return {"bytes": base64.b64encode(value).decode()} if isinstance(value, bytes) else value


def record(name: str, mode: str) -> Path:
    durable, workflows = build()
    env = WorkflowTestEnvironment(durable, step_execution=mode, start=1_800_000_000.0)
    handle = workflows["checkout"].start(["book", "flaky", "mug"], run_id=f"saved-{name}")
    env.run_until_idle()
    env.advance(60)
    durable.send_event("review:book", {"approved": True})
    env.run_until_idle()
    env.result(handle)
    path = HERE / f"checkout-{name}.json"
    path.write_text(json.dumps(to_json(durable.history(handle.run_id)), indent=1) + "\n")
    return path


if __name__ == "__main__":
    print(record(sys.argv[1], sys.argv[2]))
