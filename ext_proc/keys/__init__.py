"""Key material held in memory only, and the providers that fetch it.

:class:`SecretBytes` wraps a key so that its ``repr``/``str`` never show it. Keys are named in
the configuration by *references* (``file:``, ``vault-kv:``, ``vault-transit:``, ``ssm:``,
``kms:``; see :mod:`ext_proc.keys.refs` and ``docs/security.md``), fetched by a
:class:`KeyProvider` (:mod:`~ext_proc.keys.file`, :mod:`~ext_proc.keys.vault`,
:mod:`~ext_proc.keys.aws`) and kept, current and previous versions, in a :class:`Keyring`
(:func:`load_keys`).
"""

from __future__ import annotations

from ext_proc.keys._secret import MIN_KEY_BYTES, SecretBytes, read_key_file, read_secret_file
from ext_proc.keys.base import DataKey, KeyProvider, KeyVersion, canonical_context
from ext_proc.keys.keyring import Keyring, KeyStatus, build_keyring, load_keys
from ext_proc.keys.refs import KEY_USES, KeyRef, RefError, Scheme, is_ref, parse_ref

__all__ = [
    "KEY_USES",
    "MIN_KEY_BYTES",
    "DataKey",
    "KeyProvider",
    "KeyRef",
    "KeyStatus",
    "KeyVersion",
    "Keyring",
    "RefError",
    "Scheme",
    "SecretBytes",
    "build_keyring",
    "canonical_context",
    "is_ref",
    "load_keys",
    "parse_ref",
    "read_key_file",
    "read_secret_file",
]
