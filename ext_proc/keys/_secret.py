"""Key material held in memory only.

:class:`SecretBytes` wraps a key so that its ``repr``/``str`` never show it (logs, tracebacks,
debuggers). :func:`read_key_file` loads a key from a file mounted by the platform (Vault Agent,
the CSI secrets driver, a tmpfs mount); the value never passes through the config text or the
environment. The full key-provider interface (Vault, KMS, rotation) builds on this.
"""

from __future__ import annotations

import hmac
from pathlib import Path

from ext_proc.errors import ConfigError

__all__ = ["MIN_KEY_BYTES", "SecretBytes", "read_key_file", "read_secret_file"]

MIN_KEY_BYTES = 32


class SecretBytes:
    """Bytes that never print themselves."""

    __slots__ = ("_value",)

    def __init__(self, value: bytes) -> None:
        self._value = bytes(value)

    def reveal(self) -> bytes:
        return self._value

    def __repr__(self) -> str:
        return f"SecretBytes(<{len(self._value)} bytes>)"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, SecretBytes) and hmac.compare_digest(self._value, other._value)

    def __hash__(self) -> int:
        return hash(len(self._value))


def read_secret_file(path: Path, setting: str) -> SecretBytes:
    """Read a password or token from a file; ``setting`` names the config key in errors.
    Trailing newlines are stripped; an empty file is an error."""
    try:
        raw = path.read_bytes().rstrip(b"\r\n")
    except OSError as exc:
        raise ConfigError(f"{setting}: cannot read secret file {path} ({exc.strerror})") from None
    if not raw:
        raise ConfigError(f"{setting}: secret file {path} is empty")
    return SecretBytes(raw)


def read_key_file(path: Path, setting: str) -> SecretBytes:
    """Read a key file; ``setting`` names the config key in errors. Trailing newlines are
    stripped; the key must be at least 32 bytes."""
    try:
        raw = path.read_bytes().rstrip(b"\r\n")
    except OSError as exc:
        raise ConfigError(f"{setting}: cannot read key file {path} ({exc.strerror})") from None
    if len(raw) < MIN_KEY_BYTES:
        raise ConfigError(
            f"{setting}: key in {path} is {len(raw)} bytes; at least {MIN_KEY_BYTES} are needed"
        )
    return SecretBytes(raw)
