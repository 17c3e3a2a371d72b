"""Key material held in memory only, and the providers that fetch it.

:class:`SecretBytes` wraps a key so that its ``repr``/``str`` never show it. Keys are named in
the configuration by *references* (``file:``, ``vault-kv:``, ``vault-transit:``, ``ssm:``,
``kms:``; see :mod:`ext_proc.keys.refs` and ``docs/security.md``), fetched by a
:class:`KeyProvider` and kept, current and previous versions, in a :class:`Keyring`.
"""

from __future__ import annotations

from ext_proc.keys._secret import MIN_KEY_BYTES, SecretBytes, read_key_file, read_secret_file

__all__ = ["MIN_KEY_BYTES", "SecretBytes", "read_key_file", "read_secret_file"]
