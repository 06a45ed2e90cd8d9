"""The quickstart's Celery app: a checkout workflow of three durable steps.

Run a worker with ``celery -A examples.quickstart.app worker -l INFO``, then start a run with
``python -m examples.quickstart.start``.
"""

from __future__ import annotations

import os

from celery import Celery

from durable_celery import Durable, RetryableError, current_step

app = Celery("quickstart", broker=os.environ.get("CELERY_BROKER_URL", "redis://localhost:6379/0"))
if os.environ.get("DURABLE_REDIS_URL"):
    app.conf.durable_redis_url = os.environ["DURABLE_REDIS_URL"]  # default: the broker's Redis
durable = Durable(app)


# Explicit names: runs in flight keep working when a function moves to another module.
@durable.step(name="quickstart.reserve_inventory")
def reserve_inventory(order_id: str, items: list[str]) -> str:
    return f"rsv-{order_id}-{len(items)}"


@durable.step(name="quickstart.charge_card", retries=5, backoff=1.0)
def charge_card(order_id: str, cents: int) -> str:
    step = current_step()
    assert step is not None  # always set while a step runs durably
    if step.attempt == 1:
        # A flaky payment gateway: the first attempt times out, a durable retry follows.
        raise RetryableError("card network timed out", after=0.5)
    # The same key on every attempt: the gateway charges once however often we retry.
    return f"ch-{step.idempotency_key}-{cents}"


@durable.step(name="quickstart.send_receipt")
def send_receipt(order_id: str, charge_id: str) -> str:
    return f"receipt for {order_id} ({charge_id}) sent"


@durable.workflow(name="quickstart.checkout")
def checkout(order_id: str, items: list[str], cents: int) -> dict[str, str]:
    """Each step runs once, ever: a replay after a crash returns the recorded results."""
    reservation = reserve_inventory(order_id, items)
    charge = charge_card(order_id, cents)
    receipt = send_receipt(order_id, charge)
    return {"order": order_id, "reservation": reservation, "charge": charge, "receipt": receipt}
