"""The timing line: one structured INFO record per pass on ``durable_celery.timing``."""

from __future__ import annotations

import logging

import pytest

from durable_celery import Durable
from durable_celery.testing.local import LocalEnvironment


def timing_records(caplog: pytest.LogCaptureFixture) -> list[dict[str, object]]:
    return [r.durable for r in caplog.records if r.name == "durable_celery.timing"]  # type: ignore[attr-defined]


@pytest.mark.parametrize(("live", "warm"), [(True, "true"), (False, "false")])
def test_a_pass_that_resumes_a_parked_run_is_logged_as_warm(
    durable: Durable, caplog: pytest.LogCaptureFixture, live: bool, warm: str
) -> None:
    @durable.step
    def inc(x: int) -> int:
        return x + 1

    @durable.workflow
    def wf(n: int) -> int:
        x = 0
        for _ in range(n):
            x = inc(x)
        return x

    env = LocalEnvironment(durable, step_execution="dispatch", live_workflows=live)
    caplog.set_level(logging.INFO, logger="durable_celery.timing")
    handle = wf.start(3)
    env.step_once()  # the first pass: nothing in memory yet
    env.step_once()  # s1 runs
    env.step_once()  # the second pass

    first, second = timing_records(caplog)
    assert first["run"] == second["run"] == handle.run_id
    assert first["workflow"] == wf.name
    assert (first["warm"], second["warm"]) == ("false", warm)
    assert first["status"] == second["status"] == "running"
    assert first["dispatched"] == second["dispatched"] == 1
    # The second pass read only what was new: s1's outcome, and s2 as it was scheduled.
    assert second["new"] == 2
    assert second["entries"] == 4  # run_started, s1 scheduled and completed, s2 scheduled
