"""Godel's exception tree.

::

    GodelError                      root of everything Godel raises on purpose
    ├── ConfigError                 a setting is missing, malformed or out of range (names the key)
    ├── RulePackError               a rule pack cannot be read or compiled (names the file and rule)
    ├── BodyDecodeError             a Content-Encoding body is corrupt or exceeds a decode bound
    ├── LimiterError                the limiter backend cannot give a verdict
    └── KeyProviderError            a key could not be fetched, wrapped or unwrapped (names the ref)
        └── KeyUnwrapError          a wrapped data key was refused (wrong context or key)

Native failures surface as ``ext_proc._native_traps.TrapError`` (with ``RuleError`` and
``ParameterError`` beneath it); :mod:`ext_proc.traps` converts them to :class:`RulePackError`
at load time, so callers only ever catch the classes above.
"""

from __future__ import annotations

__all__ = [
    "BodyDecodeError",
    "ConfigError",
    "GodelError",
    "KeyProviderError",
    "KeyUnwrapError",
    "LimiterError",
    "RulePackError",
]


class GodelError(Exception):
    """Root of every error Godel raises deliberately."""


class ConfigError(GodelError):
    """The configuration is invalid. The message names the key and the reason."""


class RulePackError(GodelError):
    """A rule pack could not be loaded or compiled. The message names the source and rule id."""


class BodyDecodeError(GodelError):
    """A compressed body could not be decoded within the configured bounds."""


class LimiterError(GodelError):
    """The limiter backend failed to produce a verdict."""


class KeyProviderError(GodelError):
    """A key provider could not fetch, wrap or unwrap a key. The message names the reference
    and the reason, never the key material."""


class KeyUnwrapError(KeyProviderError):
    """A wrapped data key was refused: wrong encryption context, wrong or retired key, or
    corrupt ciphertext."""
