"""The content type of step messages that carry their input: msgpack, so the input travels as bytes.

A step's input is sealed bytes. Celery's default serializer, JSON, cannot carry bytes, so in a
JSON message the input goes as base64 text, and the Redis transport then base64-encodes the whole
body once more: a 10 KiB input made an 18.3 KiB message, where a Celery chain passing the same
value sends 13.7 KiB. In a msgpack body the bytes go as they are (13.7 KiB after the transport's
base64). Measured on the bench machine, with cProfile in a solo worker running a gather of 50
steps with 10 KiB inputs, against the same gather without them: the inputs added 240 us of
worker CPU per step in JSON, base64 and msgpack functions with JSON messages, 110 us with
msgpack ones.

A worker refuses a message whose content type is not in ``accept_content``, so msgpack is used
only when the app accepts it, and ``Durable(app)`` adds it to ``accept_content`` when the project
leaves that setting at Celery's default (msgpack is data only, as JSON is; pickle is never added).
A project that sets ``accept_content`` itself keeps exactly what it set, and its step messages
stay JSON unless it lists msgpack. Every worker of a project builds the same app, so the sender's
``accept_content`` is the receivers'. A step whose task has a serializer of its own (``auth`` for
signed messages, say) keeps it.
"""

from __future__ import annotations

import base64
from typing import TYPE_CHECKING, Any

from celery.app.defaults import DEFAULTS
from kombu.serialization import prepare_accept_content

if TYPE_CHECKING:
    from celery import Celery

__all__ = [
    "BINARY_SERIALIZER",
    "accept_binary",
    "input_argument",
    "input_from_message",
    "sends_binary",
]

BINARY_SERIALIZER = "msgpack"
_BINARY_TYPE = "application/x-msgpack"
#: Serializers a step message may be switched from: Celery's default, and msgpack itself.
_REPLACEABLE = ("json", BINARY_SERIALIZER)


def accept_binary(app: Celery) -> None:
    """Add msgpack to ``accept_content`` when the project left it at Celery's default.

    Called whenever the app's configuration is (re)loaded: Celery rebuilds ``app.conf`` then,
    dropping changes made before. The value is Celery's own default object exactly when no
    configuration source set it (a project's ``["json"]`` is another list).
    """
    conf = app.conf
    accepted = conf.accept_content
    if accepted is DEFAULTS["accept_content"]:
        conf.accept_content = [*accepted, BINARY_SERIALIZER]


def sends_binary(app: Celery, serializer: str | None) -> bool:
    """Whether a step message of a task with ``serializer`` goes as msgpack: the task has no
    serializer of its own and the app accepts msgpack. Read at every publish (a few
    microseconds), so a changed ``accept_content`` counts at once."""
    if serializer is not None and serializer not in _REPLACEABLE:
        return False
    names = app.conf.accept_content or ()
    return _BINARY_TYPE in prepare_accept_content(names)  # type: ignore[no-untyped-call]


def input_argument(payload: bytes, binary: bool) -> bytes | str:
    """The input as the message carries it: bytes (msgpack), or base64 text (JSON)."""
    return payload if binary else base64.b64encode(payload).decode("ascii")


def input_from_message(value: Any) -> bytes:
    """The input as a step message carries it: bytes (msgpack), or base64 text (JSON)."""
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value)
    return base64.b64decode(value)
