"""The embedded default (fakeredis over TCP + a worker in this process), as the demo uses it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from celery import Celery

from durable_celery import Durable, RetryableError, current_step, gather
from durable_celery.testing.embedded import EmbeddedRedis, run_worker

from .support import kinds

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def embedded() -> Iterator[EmbeddedRedis]:
    with EmbeddedRedis() as server:
        yield server


@pytest.mark.parametrize("mode", ["auto", "dispatch"])
def test_a_three_step_workflow_completes_on_the_embedded_default(
    embedded: EmbeddedRedis, mode: str
) -> None:
    app = Celery("embedded", broker=embedded.url, set_as_current=False)
    app.conf.broker_connection_retry_on_startup = True
    app.conf.broker_transport_options = {"polling_interval": 0.1}
    app.conf.durable_timer_poll_interval = 0.05
    app.conf.durable_step_execution = mode
    durable = Durable(app)

    @durable.step(name="embedded.reserve")
    def reserve(order_id: str) -> str:
        return f"rsv-{order_id}"

    @durable.step(name="embedded.charge", retries=2)
    def charge(order_id: str, cents: int) -> str:
        info = current_step()
        if info is not None and info.attempt == 1:
            raise RetryableError("card network timed out", after=0.05)
        return f"ch-{order_id}-{cents}"

    @durable.step(name="embedded.notify")
    def notify(order_id: str, channel: str) -> str:
        return f"{channel}:{order_id}"

    @durable.workflow(name="embedded.checkout")
    def checkout(order_id: str) -> dict[str, object]:
        reservation = reserve(order_id)
        payment = charge(order_id, 1999)
        sent = gather(notify.defer(order_id, "mail"), notify.defer(order_id, "sms"))
        return {"reservation": reservation, "payment": payment, "sent": sent}

    try:
        with run_worker(app, concurrency=4):
            handle = checkout.start("o-42")
            assert handle.result(timeout=20) == {
                "reservation": "rsv-o-42",
                "payment": "ch-o-42-1999",
                "sent": ["mail:o-42", "sms:o-42"],
            }
        history = kinds(durable.history(handle.run_id))
        assert history.count("step_completed") == 4
        assert history.count("step_retrying") == 1
        assert history[-1] == "run_completed"
    finally:
        durable.runtime.store.client.close()  # type: ignore[attr-defined]
        app.close()
