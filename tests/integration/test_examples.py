"""The examples run against the test Redis, so they cannot rot."""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest

from durable_celery.testing.embedded import run_worker

from .support import configure, kinds

pytestmark = pytest.mark.timeout(60)

REPO = Path(__file__).resolve().parents[2]


def test_the_quickstart_checkout_runs_end_to_end(
    redis_url: str,
    key_prefix: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.syspath_prepend(str(REPO))
    quickstart = importlib.import_module("examples.quickstart.app")
    start = importlib.import_module("examples.quickstart.start")
    app, durable = quickstart.app, quickstart.durable
    # Before first use: the runtime is built lazily from app.conf.
    assert durable._runtime is None, "the quickstart app was used before this test configured it"
    configure(app, redis_url, key_prefix)
    try:
        with run_worker(app, concurrency=2):
            assert start.main(["--order-id", "o-1", "--timeout", "20"]) == 0
            again = start.main(["--order-id", "o-1", "--timeout", "1"])
        assert again == 0
        out = capsys.readouterr().out.splitlines()
        assert out[0] == "run checkout-o-1 started"
        assert out[2] == "run checkout-o-1 already exists"
        result = durable.run("checkout-o-1").result(timeout=1)
        history = durable.history("checkout-o-1")
        charge_key = next(e.cid for e in history if e.meta.get("name") == "quickstart.charge_card")
        assert result == {
            "order": "o-1",
            "reservation": "rsv-o-1-2",
            "charge": f"ch-checkout-o-1:{charge_key}-1999",
            "receipt": f"receipt for o-1 (ch-checkout-o-1:{charge_key}-1999) sent",
        }
        assert out[1] == f"result: {result}"
        assert kinds(history).count("step_retrying") == 1
    finally:
        if durable._runtime is not None:
            durable._runtime.store.client.close()
            durable._runtime = None  # a later user of the module configures it afresh
        app.close()
