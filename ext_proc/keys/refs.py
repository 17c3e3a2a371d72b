"""Key references: short strings in the configuration that say where a key lives.

=============================================  ==========================================
reference                                      what it names
=============================================  ==========================================
``file:/abs/path``                             a file (tmpfs mount by Vault Agent or the
                                               CSI secrets driver); re-read when it changes.
                                               As a KEK, the file's bytes derive an
                                               AES-256-GCM key (HKDF-SHA256).
``vault-kv:<mount>/<path>#<field>``            one field of a Vault/OpenBao KV v2 secret
``vault-transit:<mount>/<key>``                a Transit key that wraps data keys (KEK)
``ssm:<parameter name>``                       an AWS SSM Parameter Store SecureString
``kms:<key id | key ARN | alias/name>``        an AWS KMS key that wraps data keys (KEK)
=============================================  ==========================================

A reference is never the key itself. Anything that does not start with one of the schemes above
is refused (see :func:`parse_ref`), so a literal key pasted into the configuration or the
environment stops the process at start instead of being used.

A key *id* is the reference plus ``@`` and the version the provider reported, e.g.
``vault-kv:secret/godel#pseudonym@v3``, ``ssm:/godel/pseudonym@2``, ``file:/run/k@1a2b3c4d``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum

__all__ = [
    "KEK_SCHEMES",
    "KEY_USES",
    "SECRET_SCHEMES",
    "KeyRef",
    "RefError",
    "Scheme",
    "check_use",
    "is_ref",
    "parse_ref",
]


class Scheme(StrEnum):
    FILE = "file"
    VAULT_KV = "vault-kv"
    VAULT_TRANSIT = "vault-transit"
    SSM = "ssm"
    KMS = "kms"


#: Schemes whose key material is fetched into memory (HMAC keys, passwords, signing keys).
SECRET_SCHEMES = frozenset({Scheme.FILE, Scheme.VAULT_KV, Scheme.SSM})
#: Schemes that wrap and unwrap data keys (envelope encryption); the KEK stays remote
#: except for ``file:``.
KEK_SCHEMES = frozenset({Scheme.FILE, Scheme.VAULT_TRANSIT, Scheme.KMS})

_SEGMENT = re.compile(r"^[A-Za-z0-9_.-]+$")
_FIELD = re.compile(r"^[A-Za-z0-9_.-]{1,256}$")
_SSM_NAME = re.compile(r"^[A-Za-z0-9_.\-/]{1,2048}$")
_KMS_ID = re.compile(r"^[A-Za-z0-9:/_+=,.@-]{1,2048}$")

SYNTAX = (
    "file:/abs/path, vault-kv:<mount>/<path>#<field>, vault-transit:<mount>/<key>, "
    "ssm:<parameter name>, kms:<key id, ARN or alias/name>"
)


class RefError(ValueError):
    """A string is not a valid key reference. The message never repeats the string when it
    does not even start with a known scheme (it might be a key)."""


@dataclass(frozen=True, slots=True)
class KeyRef:
    """A parsed reference. ``text`` is the reference as written (and its ``str``)."""

    scheme: Scheme
    text: str
    #: file path, KV secret path, Transit key name, SSM parameter name or KMS key id
    path: str
    #: Vault secrets-engine mount (vault-kv, vault-transit); empty otherwise
    mount: str = ""
    #: KV v2 field (vault-kv); empty otherwise
    field: str = ""

    def __str__(self) -> str:
        return self.text

    def key_id(self, version: str) -> str:
        """The id of one version of this key: ``<reference>@<version>``."""
        return f"{self.text}@{version}"


def _scheme_of(text: str) -> Scheme | None:
    head, sep, _ = text.partition(":")
    if not sep:
        return None
    try:
        return Scheme(head)
    except ValueError:
        return None


def is_ref(value: object) -> bool:
    """True when ``value`` is a string that starts with a known reference scheme (it may still
    be malformed; :func:`parse_ref` tells)."""
    return isinstance(value, str) and _scheme_of(value) is not None


def _segments(text: str, what: str) -> list[str]:
    parts = text.split("/")
    for part in parts:
        if not part or part in (".", "..") or not _SEGMENT.match(part):
            raise RefError(
                f"{what}: path segments are letters, digits, '_', '.', '-' separated by single "
                "'/' (no empty, '.' or '..' segments)"
            )
    return parts


def parse_ref(text: str) -> KeyRef:
    """Parse a reference or raise :class:`RefError` saying what is wrong."""
    scheme = _scheme_of(text)
    if scheme is None:
        raise RefError(f"not a key reference; expected one of: {SYNTAX}")
    body = text[len(scheme) + 1 :]
    where = f"{scheme}: reference {text!r}"
    if scheme is Scheme.FILE:
        if not body.startswith("/") or "\x00" in body or body.rstrip("/") == "":
            raise RefError(f"{where}: expected an absolute file path, e.g. file:/run/keys/hmac")
        return KeyRef(scheme, text, body)
    if scheme is Scheme.VAULT_KV:
        path, sep, field = body.partition("#")
        if not sep or not _FIELD.match(field):
            raise RefError(f"{where}: expected vault-kv:<mount>/<path>#<field>")
        parts = _segments(path, where)
        if len(parts) < 2:
            raise RefError(f"{where}: expected vault-kv:<mount>/<path>#<field> (mount and path)")
        return KeyRef(scheme, text, "/".join(parts[1:]), mount=parts[0], field=field)
    if scheme is Scheme.VAULT_TRANSIT:
        parts = _segments(body, where) if body else []
        if len(parts) != 2:
            raise RefError(f"{where}: expected vault-transit:<mount>/<key>, e.g. transit/godel")
        return KeyRef(scheme, text, parts[1], mount=parts[0])
    if scheme is Scheme.SSM:
        if not _SSM_NAME.match(body) or ("/" in body and not body.startswith("/")):
            raise RefError(
                f"{where}: expected ssm:<parameter name> (letters, digits, _ . - /; a "
                "hierarchical name starts with '/'; no ':version' selector)"
            )
        return KeyRef(scheme, text, body)
    if not _KMS_ID.match(body):
        raise RefError(f"{where}: expected kms:<key id>, kms:arn:aws:kms:... or kms:alias/<name>")
    return KeyRef(scheme, text, body)


#: What each named key in ``keys.*`` is used for: ``secret`` (fetched, at least 32 bytes),
#: ``password`` (fetched, any length) or ``kek`` (wraps data keys).
KEY_USES: dict[str, str] = {
    "redaction": "secret",
    "pseudonym": "secret",
    "audit": "secret",
    "audit_kek": "kek",
    "audit_signing": "secret",
    "redis_password": "password",
    "admin_token": "password",
    "inspect_token": "password",
}


def check_use(name: str, ref: KeyRef) -> None:
    """Refuse a reference whose scheme cannot serve the named key's use."""
    use = KEY_USES[name]
    if use == "kek" and ref.scheme not in KEK_SCHEMES:
        raise RefError(
            f"{ref.scheme}: names a secret, but {name} wraps data keys: use vault-transit:, "
            "kms: or file:"
        )
    if use != "kek" and ref.scheme not in SECRET_SCHEMES:
        raise RefError(
            f"{ref.scheme}: names a key-encryption key that never leaves its server, but {name} "
            "needs key material: use vault-kv:, ssm: or file:"
        )
