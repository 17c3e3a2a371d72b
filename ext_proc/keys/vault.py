"""``vault-kv:`` and ``vault-transit:`` keys from HashiCorp Vault or OpenBao, through ``hvac``.

Authentication (``keys.vault.auth``):

* ``token``: the token is read from ``token_file`` (e.g. the sink of a Vault Agent), again
  whenever the file changes. ``VAULT_TOKEN`` and ``~/.vault-token`` are never consulted.
* ``approle``: role id and secret id read from ``role_id_file`` / ``secret_id_file`` (the same
  layout as Vault Agent's AppRole auto-auth).
* ``kubernetes``: the pod's service-account JWT (``jwt_file``) is sent to the Kubernetes auth
  method, which asks the cluster's TokenReview API to verify it.
* ``jwt``: the same JWT sent to the JWT/OIDC auth method, which verifies it itself (against
  the cluster's OIDC discovery or static public keys); no TokenReview call.

Login tokens are renewed by logging in again at two thirds of their TTL and after any 403.

Transit: data keys come from ``<mount>/datakey/plaintext/<key>`` and are unwrapped by
``<mount>/decrypt/<key>``; the encryption context is sent as ``associated_data`` (AAD of
aes256-gcm96, checked by the server: a different context fails authentication). The wrapped
data key is Transit's ciphertext string (``vault:v<N>:...``), whose version prefix lets a
rotated key still decrypt older wraps until ``min_decryption_version`` is raised.
"""

from __future__ import annotations

import asyncio
import base64
import math
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import hvac
import hvac.exceptions
import requests

from ext_proc.errors import KeyProviderError, KeyUnwrapError
from ext_proc.keys._secret import SecretBytes, read_secret_file
from ext_proc.keys.base import DataKey, KeyVersion, canonical_context
from ext_proc.keys.refs import KeyRef, Scheme

if TYPE_CHECKING:
    from ext_proc.config import VaultSettings

__all__ = ["VaultProvider"]

T = TypeVar("T")


def _secret_text(path: Path, setting: str) -> str:
    try:
        return read_secret_file(path, setting).reveal().decode("utf-8").strip()
    except UnicodeDecodeError:
        raise KeyProviderError(f"{setting}: {path} is not UTF-8 text") from None


def _reason(exc: BaseException) -> str:
    if isinstance(exc, hvac.exceptions.VaultError):
        errors = getattr(exc, "errors", None)
        text = "; ".join(str(e) for e in errors) if errors else str(exc) or "error"
        return f"{type(exc).__name__}: {text}"
    if isinstance(exc, requests.exceptions.SSLError):
        return "TLS verification failed (check keys.vault.ca_file)"
    if isinstance(exc, requests.exceptions.ConnectionError):
        return "cannot connect"
    if isinstance(exc, requests.exceptions.Timeout):
        return "timed out"
    return f"{type(exc).__name__}: {exc}"


class VaultProvider:
    name = "vault"

    def __init__(self, cfg: VaultSettings) -> None:
        if not cfg.url:
            raise KeyProviderError("keys.vault.url: needed by a vault-kv: or vault-transit: key")
        self.cfg = cfg
        verify: bool | str = str(cfg.ca_file) if cfg.ca_file else True
        # token="" so that hvac never reads VAULT_TOKEN or ~/.vault-token
        self._client = hvac.Client(
            url=cfg.url,
            token="",
            verify=verify,
            namespace=cfg.namespace,
            timeout=math.ceil(cfg.timeout_seconds),  # hvac types it as whole seconds
        )
        self._lock = asyncio.Lock()
        self._renew_at = 0.0
        self._token_stat: tuple[int, int, int] | None = None

    # -- authentication ---------------------------------------------------------------------
    def _mount(self) -> str:
        return self.cfg.auth_mount or self.cfg.auth

    def _login(self) -> None:
        cfg = self.cfg
        client = self._client
        if cfg.auth == "token":
            assert cfg.token_file is not None
            client.token = _secret_text(cfg.token_file, "keys.vault.token_file")
            st = cfg.token_file.stat()
            self._token_stat = (st.st_ino, st.st_size, st.st_mtime_ns)
            self._renew_at = float("inf")
            return
        if cfg.auth == "approle":
            assert cfg.role_id_file is not None
            assert cfg.secret_id_file is not None
            resp = client.auth.approle.login(
                role_id=_secret_text(cfg.role_id_file, "keys.vault.role_id_file"),
                secret_id=_secret_text(cfg.secret_id_file, "keys.vault.secret_id_file"),
                mount_point=self._mount(),
            )
        else:
            assert cfg.role is not None
            jwt = _secret_text(cfg.jwt_file, "keys.vault.jwt_file")
            if cfg.auth == "kubernetes":
                resp = client.auth.kubernetes.login(cfg.role, jwt, mount_point=self._mount())
            else:
                resp = client.auth.jwt.jwt_login(cfg.role, jwt, path=self._mount())
        ttl = float(resp["auth"].get("lease_duration") or 0)
        self._renew_at = time.monotonic() + ttl * 2 / 3 if ttl > 0 else float("inf")

    def _token_file_changed(self) -> bool:
        if self.cfg.auth != "token" or self.cfg.token_file is None:
            return False
        try:
            st = self.cfg.token_file.stat()
        except OSError:
            return True
        return (st.st_ino, st.st_size, st.st_mtime_ns) != self._token_stat

    def _authed(self, call: Callable[[], T]) -> T:
        if (
            not self._client.token
            or time.monotonic() >= self._renew_at
            or (self._token_file_changed())
        ):
            self._login()
        try:
            return call()
        except hvac.exceptions.Forbidden:
            if self.cfg.auth == "token" and not self._token_file_changed():
                raise
            self._login()  # the login token may have expired or been revoked
            return call()

    async def _run(self, what: str, call: Callable[[], T]) -> T:
        async with self._lock:
            try:
                return await asyncio.to_thread(self._authed, call)
            except KeyProviderError:
                raise
            except Exception as exc:
                raise KeyProviderError(f"{what}: {_reason(exc)}") from None

    # -- KV v2 ------------------------------------------------------------------------------
    async def fetch(self, ref: KeyRef) -> KeyVersion:
        if ref.scheme is not Scheme.VAULT_KV:
            raise KeyProviderError(f"{ref}: only vault-kv: references hold fetchable secrets")

        def call() -> dict[str, Any]:
            resp: dict[str, Any] = self._client.secrets.kv.v2.read_secret_version(
                path=ref.path, mount_point=ref.mount, raise_on_deleted_version=True
            )
            return resp

        resp = await self._run(str(ref), call)
        data = resp["data"]["data"] or {}
        if ref.field not in data:
            fields = ", ".join(sorted(data)) or "none"
            raise KeyProviderError(f"{ref}: no field {ref.field!r} (fields: {fields})")
        value = data[ref.field]
        if not isinstance(value, str) or not value:
            raise KeyProviderError(f"{ref}: field {ref.field!r} is not a non-empty string")
        version = f"v{resp['data']['metadata']['version']}"
        return KeyVersion(ref.key_id(version), version, SecretBytes(value.encode("utf-8")))

    # -- Transit ----------------------------------------------------------------------------
    def _transit(self, ref: KeyRef) -> None:
        if ref.scheme is not Scheme.VAULT_TRANSIT:
            raise KeyProviderError(f"{ref}: only vault-transit: references wrap data keys here")

    async def generate_data_key(self, ref: KeyRef, context: Mapping[str, str]) -> DataKey:
        self._transit(ref)
        aad = base64.b64encode(canonical_context(context)).decode()

        def call() -> Any:
            return self._client.write_data(
                f"{ref.mount}/datakey/plaintext/{ref.path}",
                data={"bits": 256, "associated_data": aad},
            )

        resp = await self._run(str(ref), call)
        data = resp["data"]
        dek = SecretBytes(base64.b64decode(data["plaintext"]))
        return DataKey(dek, data["ciphertext"].encode(), ref.key_id(f"v{data['key_version']}"))

    async def unwrap(self, ref: KeyRef, wrapped: bytes, context: Mapping[str, str]) -> SecretBytes:
        self._transit(ref)
        aad = base64.b64encode(canonical_context(context)).decode()
        try:
            ciphertext = wrapped.decode("ascii")
        except UnicodeDecodeError:
            raise KeyUnwrapError(f"{ref}: not a Transit ciphertext") from None

        def call() -> Any:
            return self._client.write_data(
                f"{ref.mount}/decrypt/{ref.path}",
                data={"ciphertext": ciphertext, "associated_data": aad},
            )

        async with self._lock:
            try:
                resp = await asyncio.to_thread(self._authed, call)
            except hvac.exceptions.InvalidRequest as exc:
                raise KeyUnwrapError(
                    f"{ref}: data key refused (wrong encryption context, a retired key version "
                    f"or corrupt ciphertext): {_reason(exc)}"
                ) from None
            except Exception as exc:
                raise KeyProviderError(f"{ref}: {_reason(exc)}") from None
        return SecretBytes(base64.b64decode(resp["data"]["plaintext"]))

    # -- lifecycle --------------------------------------------------------------------------
    async def check(self) -> str:
        def call() -> dict[str, Any]:
            resp: dict[str, Any] = self._client.auth.token.lookup_self()
            return resp

        info = (await self._run(f"vault {self.cfg.url}", call))["data"]
        ttl = info.get("ttl") or 0
        policies = ",".join(info.get("policies") or [])
        expiry = f"ttl {ttl}s" if ttl else "no expiry"
        auth = self.cfg.auth
        return f"vault {self.cfg.url}: authenticated ({auth}), {expiry}, policies {policies}"

    async def close(self) -> None:
        self._client.token = ""
        adapter = self._client.adapter
        await asyncio.to_thread(adapter.close)
