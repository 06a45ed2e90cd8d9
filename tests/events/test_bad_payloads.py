"""A payload that cannot be stored is refused before anything is written.

On a real Redis: every key under the test's prefix (run logs, hooks, buffers, dedupe ids, the
broker's queues) is byte-for-byte the same after the refused send, and the same send with a
good payload then works (no hook was consumed, no dedupe id claimed).
"""

from __future__ import annotations

from typing import Any

import pytest
import redis

from durable_celery import Durable, EncodingError, receive, wait_for_event

from .conftest import AppFactory
from .support import Unstorable, kinds

pytestmark = pytest.mark.timeout(30)

BAD_PAYLOADS = [
    pytest.param(Unstorable(), "support.Unstorable cannot be stored", id="object"),
    pytest.param({"items": [1, Unstorable()]}, "field 'items[1]'", id="nested"),
    pytest.param(lambda: None, "value of type function", id="function"),
]


def snapshot(client: redis.Redis, key_prefix: str) -> dict[bytes, bytes | None]:
    """Every key under the prefix with its serialized value (DUMP)."""
    return {key: client.dump(key) for key in client.scan_iter(match=f"{key_prefix}:*")}


def waiting_run(durable: Durable, key: str) -> Any:
    """A run waiting on ``key`` (its first pass run here: no worker anywhere)."""

    @durable.workflow(name="waiter")
    def waiter(k: str) -> Any:
        return wait_for_event(k)

    handle = waiter.start(key)
    durable.runtime.orchestrator.run(handle.run_id)
    assert kinds(durable.history(handle.run_id))[-1] == "event_awaited"
    return handle


@pytest.mark.parametrize(("payload", "names"), BAD_PAYLOADS)
def test_an_unstorable_event_payload_changes_nothing_and_the_hook_stays(
    make_app: AppFactory, redis_client: redis.Redis, key_prefix: str, payload: Any, names: str
) -> None:
    _, durable = make_app()
    handle = waiting_run(durable, "review:o-1")
    before = snapshot(redis_client, key_prefix)
    assert any(b":hook:review:o-1" in key for key in before)

    with pytest.raises(EncodingError) as caught:
        durable.send_event("review:o-1", payload, dedupe_id="msg-1")
    message = str(caught.value)
    assert message.startswith("send_event('review:o-1') payload: ")
    assert names in message and "register it with durable.register_type" in message
    assert snapshot(redis_client, key_prefix) == before

    # The hook was not consumed and the dedupe id not claimed: the corrected send delivers.
    assert durable.send_event("review:o-1", {"ok": True}, dedupe_id="msg-1") is True
    durable.runtime.orchestrator.run(handle.run_id)
    assert handle.result(timeout=5) == {"ok": True}


def test_an_unstorable_buffered_event_leaves_the_buffer_as_it_was(
    make_app: AppFactory, redis_client: redis.Redis, key_prefix: str
) -> None:
    _, durable = make_app()
    durable.send_event("k", "kept", buffer=True)
    before = snapshot(redis_client, key_prefix)
    with pytest.raises(EncodingError):
        durable.send_event("k", Unstorable(), buffer=True, dedupe_id="d")
    assert snapshot(redis_client, key_prefix) == before
    assert redis_client.llen(f"{key_prefix}:evbuf:k") == 1
    assert durable.send_event("k", "second", buffer=True, dedupe_id="d") is True
    assert redis_client.llen(f"{key_prefix}:evbuf:k") == 2


@pytest.mark.parametrize(("payload", "names"), BAD_PAYLOADS)
def test_an_unstorable_signal_payload_changes_nothing(
    make_app: AppFactory, redis_client: redis.Redis, key_prefix: str, payload: Any, names: str
) -> None:
    _, durable = make_app()

    @durable.workflow(name="inbox")
    def inbox() -> Any:
        return receive("approve")

    handle = inbox.start()
    durable.runtime.orchestrator.run(handle.run_id)
    before = snapshot(redis_client, key_prefix)

    with pytest.raises(EncodingError) as caught:
        durable.signal(handle.run_id, "approve", payload, dedupe_id="s-1")
    assert str(caught.value).startswith("signal 'approve' payload: ")
    assert names in str(caught.value)
    assert snapshot(redis_client, key_prefix) == before

    assert durable.signal(handle.run_id, "approve", "yes", dedupe_id="s-1") is True
    durable.runtime.orchestrator.run(handle.run_id)
    assert handle.result(timeout=5) == "yes"
