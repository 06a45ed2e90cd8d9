"""Settings: lowercase ``durable_*`` keys of ``app.conf``, read in one place into one frozen object.

Django projects using ``CELERY_`` namespaced settings get these as ``CELERY_DURABLE_*``: Celery
maps them onto the same lowercase keys before we read them.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any, Literal

from .errors import ConfigurationError

__all__ = ["DurableConfig", "StepExecution", "DEFAULTS", "parse_keyring"]

StepExecution = Literal["auto", "inline", "dispatch"]
EXECUTION_MODES: tuple[str, ...] = ("auto", "inline", "dispatch")


@dataclass(frozen=True)
class DurableConfig:
    """Every durable_celery setting, validated. Build with :meth:`from_mapping`."""

    #: Event store URL (``redis://``, ``rediss://``, ``unix://``). ``None``: the broker URL when it
    #: is Redis.
    redis_url: str | None = None
    #: Prefix of every key; runs of one prefix never see another's.
    key_prefix: str = "durable"
    #: Default step execution: ``auto`` | ``inline`` | ``dispatch``.
    step_execution: StepExecution = "auto"
    #: Ordered ``(key_id, 32-byte key)`` pairs: the first encrypts, all decrypt.
    encryption_keys: tuple[tuple[str, bytes], ...] = ()
    #: Refuse to run without encryption keys.
    require_encryption: bool = False
    #: Payloads at least this many bytes are compressed (when it saves space).
    compression_threshold: int = 1024
    #: Seconds a finished run keeps its log before it is deleted whole.
    retention: float = 7 * 86400.0
    #: Seconds an orchestration lease lives without being renewed.
    lease_timeout: float = 60.0
    #: Seconds between polls of the durable timer set.
    timer_poll_interval: float = 0.5
    #: Seconds between recovery sweeps.
    sweep_interval: float = 30.0
    #: Default retry policy of steps (per-step options override).
    step_retries: int = 3
    step_backoff: float = 1.0
    step_max_backoff: float = 600.0
    step_jitter: bool = True
    #: Queue of the orchestrator task; ``None``: the app's default queue.
    orchestrator_queue: str | None = None
    #: Byte bound of the per-process hydration cache (decoded immutable results).
    hydration_cache_bytes: int = 64 * 1024 * 1024
    #: Results longer than this (str/bytes/int) are never kept in the hydration cache.
    hydration_max_item_bytes: int = 4096
    #: How many runs' event deltas a worker process keeps.
    event_cache_runs: int = 1024
    #: Keep suspended workflows in memory between wakes (greenlets; see runtime.live).
    live_workflows: bool = True
    #: The worker that records a dispatched step's outcome continues the run itself (one broker
    #: hop per step instead of two). Off when ``orchestrator_queue`` is set: orchestration then
    #: belongs to the workers of that queue.
    one_hop: bool = True
    #: With one-hop: a worker that holds the run's suspended workflow continues it with a
    #: step's outcome before recording it, and records the outcome with the steps sent next
    #: and the pass's end in one round trip (see ``Orchestrator.run_ahead``).
    speculative_continuation: bool = True
    #: A dispatched step's input (encoded, as in the log) travels in its task message when it
    #: is at most this many bytes: the step task then reads nothing before running, and the
    #: pass sends the step before recording it, finishing itself in that same append (see
    #: runtime.host). Larger inputs are read from the log. 0 turns both off.
    message_input_limit: int = 16384
    #: An inline step that finished in its pass stores its input in the log only when the
    #: packed arguments are at most this many bytes; larger ones are identified by their
    #: argument hash and size (see runtime.host). -1: store every input.
    inline_input_limit: int = 1024
    #: Seconds after which the dispatched steps of a running run that recorded nothing are sent
    #: again (same task ids; outcomes are still recorded once). Celery's Redis transport can lose
    #: a message a worker had taken from the queue when that worker dies. ``None``: the broker's
    #: ``visibility_timeout`` (default one hour) with a Redis broker, never with others. 0: never.
    lost_message_timeout: float | None = None

    @classmethod
    def from_mapping(cls, conf: Mapping[str, Any], broker_url: str | None = None) -> DurableConfig:
        """Read every ``durable_<field>`` key of ``conf`` (e.g. ``app.conf``); validate each."""
        values: dict[str, Any] = {}
        for f in fields(cls):
            key = f"durable_{f.name}"
            value = conf.get(key)
            if value is not None:
                values[f.name] = value
        if "encryption_keys" in values:
            values["encryption_keys"] = parse_keyring(values["encryption_keys"])
        if values.get("redis_url") is None and broker_url and _is_redis_url(broker_url):
            values["redis_url"] = broker_url
        if values.get("lost_message_timeout") is None:
            values["lost_message_timeout"] = _visibility_timeout(conf, broker_url)
        config = cls(**values)
        config.validate()
        return config

    def validate(self) -> None:
        if self.step_execution not in EXECUTION_MODES:
            raise ConfigurationError(
                f"durable_step_execution={self.step_execution!r} is not valid: "
                f"use one of {', '.join(EXECUTION_MODES)}"
            )
        if self.require_encryption and not self.encryption_keys:
            raise ConfigurationError(
                "durable_require_encryption is on but durable_encryption_keys is empty: "
                "configure at least one 32-byte key"
            )
        if self.lost_message_timeout is not None and float(self.lost_message_timeout) < 0:
            raise ConfigurationError(
                "durable_lost_message_timeout must be 0 (never send steps again) or a number "
                "of seconds"
            )
        for name in ("lease_timeout", "timer_poll_interval", "sweep_interval", "retention"):
            if float(getattr(self, name)) <= 0:
                raise ConfigurationError(f"durable_{name} must be a positive number of seconds")
        if int(self.message_input_limit) < 0:
            raise ConfigurationError(
                "durable_message_input_limit must be 0 (inputs are read from the log) or a "
                "number of bytes"
            )
        if int(self.inline_input_limit) < -1:
            raise ConfigurationError(
                "durable_inline_input_limit must be a number of bytes (0: store no inputs of "
                "finished inline steps) or -1 (store them all)"
            )
        if self.step_retries < 0:
            raise ConfigurationError("durable_step_retries must be 0 or more")
        if ":" in self.key_prefix or "{" in self.key_prefix:
            raise ConfigurationError("durable_key_prefix may not contain ':' or '{'")


DEFAULTS: dict[str, Any] = {f"durable_{f.name}": None for f in fields(DurableConfig)}


def _visibility_timeout(conf: Mapping[str, Any], broker_url: str | None) -> float:
    """How long kombu's Redis transport waits before it redelivers an unacknowledged message;
    0 for other brokers, which keep a message until a consumer acknowledges it."""
    if not broker_url or not _is_redis_url(str(broker_url).split(";")[0]):
        return 0.0
    options = conf.get("broker_transport_options") or {}
    return float(options.get("visibility_timeout", 3600))


def _is_redis_url(url: str) -> bool:
    return url.split("://", 1)[0] in {"redis", "rediss", "unix", "redis+socket"}


def parse_keyring(raw: Any) -> tuple[tuple[str, bytes], ...]:
    """Accept ``{kid: key}``, ``[(kid, key), ...]`` or ``["kid:base64key", ...]``.

    Keys are 32 raw bytes or their standard/URL-safe base64 text. The first key encrypts.
    """
    if isinstance(raw, tuple) and all(isinstance(p, tuple) for p in raw) and not raw:
        return ()
    pairs: list[tuple[Any, Any]]
    if isinstance(raw, Mapping):
        pairs = list(raw.items())
    elif isinstance(raw, str):
        pairs = [_split_key_text(part) for part in raw.split(",") if part.strip()]
    else:
        pairs = [_split_key_text(p) if isinstance(p, str) else tuple(p) for p in raw]
    keyring: list[tuple[str, bytes]] = []
    for kid, key in pairs:
        kid = str(kid)
        if not kid or ":" in kid or len(kid.encode()) > 255:
            raise ConfigurationError(
                f"durable_encryption_keys: key id {kid!r} must be 1-255 bytes without ':'"
            )
        keyring.append((kid, _key_bytes(kid, key)))
    if len({kid for kid, _ in keyring}) != len(keyring):
        raise ConfigurationError("durable_encryption_keys: key ids must be unique")
    return tuple(keyring)


def _split_key_text(text: str) -> tuple[str, str]:
    kid, sep, key = text.strip().partition(":")
    if not sep:
        raise ConfigurationError(
            "durable_encryption_keys: write each key as 'key_id:base64key' (missing ':')"
        )
    return kid, key


def _key_bytes(kid: str, key: Any) -> bytes:
    if isinstance(key, (bytes, bytearray)) and len(key) == 32:
        return bytes(key)
    text = key.decode() if isinstance(key, (bytes, bytearray)) else str(key)
    for decoder in (base64.b64decode, base64.urlsafe_b64decode):
        try:
            decoded = decoder(text + "=" * (-len(text) % 4))
        except (binascii.Error, ValueError):
            continue
        if len(decoded) == 32:
            return decoded
    raise ConfigurationError(
        f"durable_encryption_keys: key {kid!r} is not 32 bytes (AES-256); generate one with "
        '`python -c "import os,base64;print(base64.b64encode(os.urandom(32)).decode())"`'
    )
