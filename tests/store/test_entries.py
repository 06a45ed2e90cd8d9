"""Both stores return equal events for the same appends, whatever the meta and payload."""

from __future__ import annotations

from typing import Any

import fakeredis
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from durable_celery.replay.events import RUN_STARTED, STEP_COMPLETED, Event, NewEvent
from durable_celery.store import EventStore, MemoryEventStore, RedisEventStore

# When a property fails, hypothesis imports libcst to suggest a patch, and libcst trips a
# DeprecationWarning in mypy_extensions: with filterwarnings=error that hides the real failure
# behind a pytest INTERNALERROR.
pytestmark = pytest.mark.filterwarnings(
    "ignore:mypy_extensions.TypedDict is deprecated:DeprecationWarning"
)

scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats(allow_nan=False)
    | st.text(max_size=20)
    | st.binary(max_size=20)
)
values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
events = st.builds(
    NewEvent,
    kind=st.sampled_from([STEP_COMPLETED, "marker", "custom_kind"]),
    cid=st.text(max_size=12),
    meta=st.dictionaries(st.text(max_size=8), values, max_size=4),
    payload=st.none() | st.binary(max_size=64),
)


def _shape(history: list[Event]) -> list[tuple[str, str, dict[str, Any], bytes | None]]:
    return [(e.kind, e.cid, e.meta, e.payload) for e in history]


@settings(max_examples=60, deadline=None)
@given(batch=st.lists(events, max_size=6))
def test_memory_and_redis_stores_return_equal_events(batch: list[NewEvent]) -> None:
    client = fakeredis.FakeRedis(server=fakeredis.FakeServer())
    stores: list[EventStore] = [MemoryEventStore(), RedisEventStore(client, "p")]
    histories = []
    for store in stores:
        assert store.create_run("r1", "wf", NewEvent(RUN_STARTED), {})
        assert store.acquire_lease("r1", "t", 10_000)
        store.append_fenced("r1", "t", batch)
        histories.append(_shape(store.read_since("r1", None)))
    client.close()
    assert histories[0] == histories[1]
    assert len(histories[0]) >= 1


@settings(max_examples=60, deadline=None)
@given(batch=st.lists(events, min_size=1, max_size=6))
def test_the_entries_an_append_rebuilds_equal_what_a_read_returns(batch: list[NewEvent]) -> None:
    """An append does not read its own entries back: it rebuilds them from what it sent
    (bytes in meta, as an inline step's input, come back as bytes; tuples as lists)."""
    client = fakeredis.FakeRedis(server=fakeredis.FakeServer())
    for store in (MemoryEventStore(), RedisEventStore(client, "p")):
        assert store.create_run("r1", "wf", NewEvent(RUN_STARTED), {})
        (started,) = store.read_since("r1", None)
        assert store.acquire_lease("r1", "t", 10_000)
        _, rebuilt = store.append_fenced_and_read(
            "r1", "t", batch, after_id=started.entry_id, known=1
        )
        assert rebuilt == store.read_since("r1", started.entry_id)
    client.close()
