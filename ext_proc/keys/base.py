"""The provider interface and the values it returns."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from ext_proc.errors import KeyProviderError
from ext_proc.keys._secret import SecretBytes
from ext_proc.keys.refs import KeyRef

__all__ = ["DataKey", "KeyProvider", "KeyVersion", "canonical_context"]


@dataclass(frozen=True, slots=True)
class KeyVersion:
    """One version of a fetched key. ``key_id`` is ``<reference>@<version>``."""

    key_id: str
    version: str
    material: SecretBytes = field(repr=False, compare=False)


@dataclass(frozen=True, slots=True)
class DataKey:
    """A fresh data key (DEK) and its wrapped copy.

    Keep ``wrapped`` and ``kek_id`` beside the data encrypted with ``plaintext``; pass
    ``wrapped`` and the same context to ``unwrap`` to get ``plaintext`` back.
    """

    plaintext: SecretBytes = field(repr=False)
    wrapped: bytes
    kek_id: str


def canonical_context(context: Mapping[str, str]) -> bytes:
    """The encryption context as bytes for AAD: JSON with sorted keys, no spaces."""
    for k, v in context.items():
        if not isinstance(k, str) or not k or not isinstance(v, str):
            raise KeyProviderError(
                "encryption context: keys must be non-empty strings, values strings"
            )
    return json.dumps(dict(sorted(context.items())), separators=(",", ":")).encode()


@runtime_checkable
class KeyProvider(Protocol):
    """Where keys come from. Every method names the reference in its errors
    (:class:`~ext_proc.errors.KeyProviderError`) and never the material."""

    #: short name for messages: "file", "vault", "aws"
    name: str

    async def fetch(self, ref: KeyRef) -> KeyVersion:
        """The current version of a secret (``file:``, ``vault-kv:``, ``ssm:``)."""
        ...

    async def generate_data_key(self, ref: KeyRef, context: Mapping[str, str]) -> DataKey:
        """A new 32-byte data key wrapped under the KEK ``ref`` with ``context`` bound as
        associated data (``file:``, ``vault-transit:``, ``kms:``)."""
        ...

    async def unwrap(self, ref: KeyRef, wrapped: bytes, context: Mapping[str, str]) -> SecretBytes:
        """Unwrap a data key; :class:`~ext_proc.errors.KeyUnwrapError` if the context differs
        or the wrapping key version is gone."""
        ...

    async def check(self) -> str:
        """Reach and authenticate to the service; a one-line description (no secrets)."""
        ...

    async def close(self) -> None:
        """Drop connections and any cached key material."""
        ...
