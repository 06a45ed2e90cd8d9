"""Key naming: one module, a hash tag per run, global keys outside any tag."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from redis.crc import key_slot

from durable_celery.store import keys

# When a property fails, hypothesis imports libcst to suggest a patch, and libcst trips a
# DeprecationWarning in mypy_extensions: with filterwarnings=error that hides the real failure
# behind a pytest INTERNALERROR.
pytestmark = pytest.mark.filterwarnings(
    "ignore:mypy_extensions.TypedDict is deprecated:DeprecationWarning"
)

run_ids = st.text(
    alphabet=st.characters(exclude_characters="{}", exclude_categories=["Cs"]),
    min_size=1,
    max_size=keys.MAX_RUN_ID_LENGTH,
)


def test_run_keys_are_named_under_the_prefix_and_the_run_hash_tag() -> None:
    k = keys.run_keys("durable", "r-42")
    assert k.all() == (
        "durable:{r-42}:log",
        "durable:{r-42}:meta",
        "durable:{r-42}:outcomes",
        "durable:{r-42}:lease",
        "durable:{r-42}:wake",
        "durable:{r-42}:outbox",
        "durable:{r-42}:waitfor",
        "durable:{r-42}:early",
        "durable:{r-42}:payloads",
    )
    assert len(set(k.all())) == len(k.all())


def test_global_keys_carry_no_hash_tag() -> None:
    assert keys.runs_index("durable") == "durable:runs"
    assert keys.timers("durable") == "durable:timers"
    assert "{" not in keys.runs_index("p") + keys.timers("p")


@given(run_id=run_ids)
def test_every_key_of_a_run_lives_in_the_slot_of_its_run_id(run_id: str) -> None:
    slots = {key_slot(key.encode()) for key in keys.run_keys("durable", run_id).all()}
    assert slots == {key_slot(run_id.encode())}


@pytest.mark.parametrize(
    ("run_id", "why"),
    [
        ("", "non-empty"),
        ("a{b", "must not contain"),
        ("a}b", "must not contain"),
        ("{r}", "must not contain"),
        ("x" * (keys.MAX_RUN_ID_LENGTH + 1), "at most 200"),
    ],
)
def test_bad_run_ids_are_refused_with_a_message_saying_why(run_id: str, why: str) -> None:
    with pytest.raises(ValueError, match=why):
        keys.run_keys("durable", run_id)


def test_a_run_id_of_the_maximum_length_is_accepted() -> None:
    assert keys.validate_run_id("x" * keys.MAX_RUN_ID_LENGTH)


def test_a_non_string_run_id_is_refused() -> None:
    with pytest.raises(ValueError, match="non-empty string"):
        keys.validate_run_id(42)  # type: ignore[arg-type]


@pytest.mark.parametrize("prefix", ["", "a{b}", "x}"])
def test_bad_prefixes_are_refused(prefix: str) -> None:
    with pytest.raises(ValueError, match="prefix"):
        keys.validate_prefix(prefix)


short_text = st.text(min_size=1, max_size=20)


def test_external_event_keys_are_global_and_named_under_the_prefix() -> None:
    assert keys.hook("durable", "order:7") == "durable:hook:order:7"
    assert keys.event_buffer("durable", "order:7") == "durable:evbuf:order:7"
    assert keys.dedupe("durable", "order:7", "d1") == "durable:dedupe:7:order:7:d1"


@given(key=short_text, other=short_text, dedupe_id=short_text, other_id=short_text)
def test_dedupe_keys_of_different_pairs_never_collide(
    key: str, other: str, dedupe_id: str, other_id: str
) -> None:
    same = keys.dedupe("p", key, dedupe_id) == keys.dedupe("p", other, other_id)
    assert same == ((key, dedupe_id) == (other, other_id))


@pytest.mark.parametrize(
    ("key", "why"),
    [
        ("", "non-empty"),
        (None, "non-empty"),
        ("x" * (keys.MAX_EVENT_KEY_LENGTH + 1), "at most 1000"),
    ],
)
def test_bad_event_keys_are_refused(key: str, why: str) -> None:
    with pytest.raises(ValueError, match=why):
        keys.hook("p", key)
    with pytest.raises(ValueError, match=why):
        keys.dedupe("p", key, "d1")


def test_an_empty_dedupe_id_is_refused() -> None:
    with pytest.raises(ValueError, match="dedupe id"):
        keys.dedupe("p", "k", "")
