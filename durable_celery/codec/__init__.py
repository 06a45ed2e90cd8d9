"""Payloads: how values cross the event log, as ``encrypt(compress(msgpack(value)))``.

:class:`Codec` is the one object the rest of the package uses. It imports neither redis nor celery,
and never pickles: a log must not be able to run code by being read.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..config import DurableConfig
from ..errors import ConfigurationError, DecodingError, DurableError
from .compression import Compressor, decompress
from .envelope import Keyring, Place, seal, unseal
from .exceptions import encode_exception, rebuild_exception
from .hashing import argument_hash
from .paths import refusal
from .registry import TypeRegistry
from .types import ExtensionTypes

__all__ = ["Codec", "Place", "TypeRegistry", "encode_exception", "rebuild_exception"]


class Codec:
    """Encodes values for one place in the log and decodes them back.

    Encryption is on whenever ``keyring`` holds keys (``(key_id, 32-byte key)`` pairs; the first
    encrypts, all decrypt). Safe to share between threads.
    """

    registry: TypeRegistry

    def __init__(
        self,
        keyring: Sequence[tuple[str, bytes]] = (),
        *,
        compression_threshold: int = 1024,
        require_encryption: bool = False,
        registry: TypeRegistry | None = None,
    ) -> None:
        self._keyring = Keyring(keyring)
        if require_encryption and not self._keyring:
            raise ConfigurationError(
                "durable_require_encryption is on but durable_encryption_keys is empty: "
                "configure at least one 32-byte key"
            )
        if isinstance(compression_threshold, bool) or not isinstance(compression_threshold, int):
            raise ConfigurationError(
                "durable_compression_threshold must be a whole number of bytes"
            )
        if compression_threshold < 0:
            raise ConfigurationError("durable_compression_threshold must be 0 or more")
        self._compressor = Compressor(compression_threshold)
        self._require_encryption = require_encryption
        self.registry = registry if registry is not None else TypeRegistry()
        self._types = ExtensionTypes(self.registry)

    @classmethod
    def from_config(cls, config: DurableConfig, registry: TypeRegistry | None = None) -> Codec:
        return cls(
            config.encryption_keys,
            compression_threshold=config.compression_threshold,
            require_encryption=config.require_encryption,
            registry=registry,
        )

    @property
    def encrypting(self) -> bool:
        return bool(self._keyring)

    def encode(self, value: Any, place: Place, *, label: str = "value") -> bytes:
        """The stored form of ``value`` at ``place``; ``label`` names it in an EncodingError,
        and the source of its payloads for compression (see ``codec.compression``)."""
        return self.seal(self.pack(value, label=label), place, source=label)

    def seal(self, packed: bytes, place: Place, *, source: str = "value") -> bytes:
        """The stored form of bytes :meth:`pack` made: what :meth:`encode` does after packing.
        ``source``: where such payloads come from (``codec.compression.Compressor``)."""
        body, compressed = self._compressor.compress(packed, place.kind, source)
        return seal(body, place, self._keyring, compressed=compressed)

    def decode(self, blob: bytes, place: Place) -> Any:
        """The value :meth:`encode` stored at ``place``; DecodingError/DecryptionError otherwise."""
        body, compressed = unseal(
            blob, place, self._keyring, require_encryption=self._require_encryption
        )
        return self.unpack(decompress(body) if compressed else body)

    def pack(self, value: Any, *, label: str = "value") -> bytes:
        """Canonical msgpack of ``value``: equal values give equal bytes in every process."""
        try:
            return self._types.pack(value)
        except Exception as err:
            raise refusal(value, label, err, self._types.pack, self.registry) from None

    def unpack(self, data: bytes) -> Any:
        try:
            return self._types.unpack(data)
        except DurableError:
            raise
        except Exception as err:
            raise DecodingError(
                f"corrupt payload: the body is not a valid value ({type(err).__name__}: {err})"
            ) from None

    def fingerprint(self, value: Any, *, label: str = "value") -> str:
        """The argument hash of ``value`` (``codec.hashing``); stable across processes and runs."""
        return self.fingerprint_packed(value, label=label)[0]

    def fingerprint_packed(self, value: Any, *, label: str = "value") -> tuple[str, bytes]:
        """``(fingerprint, packed bytes)``: a caller that also stores ``value`` seals the same
        bytes (:meth:`seal`) instead of packing it twice."""
        packed = self.pack(value, label=label)
        return argument_hash(packed), packed
