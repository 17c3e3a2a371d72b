"""The keyring: every configured key by name, its current and previous versions, in memory.

``await load_keys(settings)`` builds the providers the configured references need, fetches
every key once and returns a :class:`Keyring`, or raises
:class:`~ext_proc.errors.KeyProviderError` listing every key that failed. ``await
keyring.refresh()`` fetches everything again (on SIGHUP, ``POST /reload`` or every
``keys.refresh_seconds``); a new version becomes current and the one before stays available by
its key id, so data written under it still verifies or decrypts. A failed refresh keeps the
versions already held and reports the error.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ext_proc.errors import KeyProviderError
from ext_proc.keys._secret import MIN_KEY_BYTES, SecretBytes
from ext_proc.keys.base import DataKey, KeyProvider, KeyVersion
from ext_proc.keys.refs import KEY_USES, KeyRef, Scheme, check_use, parse_ref

if TYPE_CHECKING:
    from ext_proc.config import KeySettings, Settings

__all__ = ["CHECK_CONTEXT", "KeyStatus", "Keyring", "build_keyring", "load_keys"]

log = logging.getLogger(__name__)

#: Encryption context of the wrap/unwrap round trip that checks a KEK.
CHECK_CONTEXT: Mapping[str, str] = {"purpose": "godel-keys-check"}


@dataclass(frozen=True, slots=True)
class KeyStatus:
    """The outcome of loading one key: ``key_id`` on success, ``error`` otherwise."""

    name: str
    ref: str
    key_id: str | None
    error: str | None = None
    changed: bool = False

    @property
    def ok(self) -> bool:
        return self.error is None


@dataclass
class _Entry:
    name: str
    ref: KeyRef
    use: str
    provider: KeyProvider
    versions: list[KeyVersion]
    kek_id: str | None = None


class Keyring:
    """Named keys and their kept versions. Read methods are synchronous and never do I/O."""

    def __init__(
        self,
        refs: Mapping[str, KeyRef],
        providers: Mapping[Scheme, KeyProvider],
        keep: int = 2,
    ) -> None:
        self._keep = max(1, keep)
        self._providers = dict(providers)
        self._entries: dict[str, _Entry] = {}
        for name, ref in refs.items():
            use = KEY_USES.get(name, "secret")
            provider = providers.get(ref.scheme)
            if provider is None:
                raise KeyProviderError(f"keys.{name}: no provider for {ref.scheme}: references")
            self._entries[name] = _Entry(name, ref, use, provider, [])
        self._refresh_lock = asyncio.Lock()

    # -- reading ----------------------------------------------------------------------------
    @property
    def names(self) -> tuple[str, ...]:
        return tuple(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __repr__(self) -> str:
        return f"Keyring({', '.join(self._entries)})"

    def _entry(self, name: str) -> _Entry:
        try:
            return self._entries[name]
        except KeyError:
            raise KeyProviderError(f"keys.{name}: not configured") from None

    def ref(self, name: str) -> KeyRef:
        return self._entry(name).ref

    def current(self, name: str) -> KeyVersion:
        """The newest version of a fetched key (not for ``kek`` keys)."""
        entry = self._entry(name)
        if entry.use == "kek":
            raise KeyProviderError(f"keys.{name}: a KEK has no local material; use wrap/unwrap")
        if not entry.versions:
            raise KeyProviderError(f"keys.{name}: not loaded ({entry.ref})")
        return entry.versions[0]

    def versions(self, name: str) -> tuple[KeyVersion, ...]:
        """Every kept version, newest first."""
        return tuple(self._entry(name).versions)

    def get(self, name: str, key_id: str) -> KeyVersion:
        """A kept version by its key id (as stored beside data made with it)."""
        for version in self._entry(name).versions:
            if version.key_id == key_id:
                return version
        raise KeyProviderError(
            f"keys.{name}: version {key_id} is not held (keeps the last {self._keep})"
        )

    def material(self, name: str) -> SecretBytes:
        """Shortcut for ``current(name).material``."""
        return self.current(name).material

    # -- envelope encryption ----------------------------------------------------------------
    async def generate_data_key(self, name: str, context: Mapping[str, str]) -> DataKey:
        """A new data key wrapped under the KEK ``name`` (e.g. ``audit_kek``)."""
        entry = self._entry(name)
        if entry.use != "kek":
            raise KeyProviderError(f"keys.{name}: not a key-encryption key")
        return await entry.provider.generate_data_key(entry.ref, context)

    async def unwrap(self, name: str, wrapped: bytes, context: Mapping[str, str]) -> SecretBytes:
        entry = self._entry(name)
        if entry.use != "kek":
            raise KeyProviderError(f"keys.{name}: not a key-encryption key")
        return await entry.provider.unwrap(entry.ref, wrapped, context)

    # -- loading ----------------------------------------------------------------------------
    async def _load(self, entry: _Entry) -> KeyStatus:
        ref = str(entry.ref)
        try:
            if entry.use == "kek":
                dk = await entry.provider.generate_data_key(entry.ref, CHECK_CONTEXT)
                back = await entry.provider.unwrap(entry.ref, dk.wrapped, CHECK_CONTEXT)
                if back != dk.plaintext:
                    raise KeyProviderError(f"{ref}: wrap/unwrap round trip returned other bytes")
                changed = entry.kek_id != dk.kek_id
                entry.kek_id = dk.kek_id
                return KeyStatus(entry.name, ref, dk.kek_id, changed=changed)
            version = await entry.provider.fetch(entry.ref)
            size = len(version.material.reveal())
            if entry.use == "secret" and size < MIN_KEY_BYTES:
                raise KeyProviderError(
                    f"{version.key_id}: key is {size} bytes; at least {MIN_KEY_BYTES} are needed"
                )
            changed = not entry.versions or entry.versions[0].key_id != version.key_id
            if changed:
                kept = [v for v in entry.versions if v.key_id != version.key_id]
                entry.versions = [version, *kept][: self._keep]
            return KeyStatus(entry.name, ref, version.key_id, changed=changed)
        except KeyProviderError as exc:
            return KeyStatus(entry.name, ref, None, error=str(exc))
        except Exception as exc:  # a provider bug must not hide the other keys' status
            return KeyStatus(entry.name, ref, None, error=f"{type(exc).__name__}: {exc}")

    async def refresh(self) -> list[KeyStatus]:
        """Fetch every key again. Never raises for a provider failure: the versions already
        held stay, and the failure is in the returned status (and logged, without material)."""
        async with self._refresh_lock:
            statuses = list(await asyncio.gather(*(self._load(e) for e in self._entries.values())))
        for status in statuses:
            if status.error:
                log.warning("key %s (%s) not refreshed: %s", status.name, status.ref, status.error)
            elif status.changed:
                log.info("key %s loaded: %s", status.name, status.key_id)
        return statuses

    async def check_providers(self) -> list[tuple[str, str | None, str | None]]:
        """``(provider, description, error)`` for every provider in use."""
        out: list[tuple[str, str | None, str | None]] = []
        seen: set[int] = set()
        for entry in self._entries.values():
            provider = entry.provider
            if id(provider) in seen:
                continue
            seen.add(id(provider))
            try:
                out.append((provider.name, await provider.check(), None))
            except KeyProviderError as exc:
                out.append((provider.name, None, str(exc)))
        return out

    async def refresh_forever(self, interval: float) -> None:
        """Call :meth:`refresh` every ``interval`` seconds until cancelled."""
        while True:
            await asyncio.sleep(interval)
            await self.refresh()

    async def close(self) -> None:
        for entry in self._entries.values():
            entry.versions.clear()
        seen: set[int] = set()
        for provider in self._providers.values():
            if id(provider) not in seen:
                seen.add(id(provider))
                await provider.close()


def configured_refs(cfg: KeySettings) -> dict[str, KeyRef]:
    """The named keys that are set, parsed (the config already validated them)."""
    refs: dict[str, KeyRef] = {}
    for name in KEY_USES:
        text = getattr(cfg, name)
        if text is not None:
            ref = parse_ref(text)
            check_use(name, ref)
            refs[name] = ref
    return refs


def build_keyring(cfg: KeySettings) -> Keyring:
    """A keyring with providers for the configured references; nothing is fetched yet."""
    refs = configured_refs(cfg)
    schemes = {ref.scheme for ref in refs.values()}
    providers: dict[Scheme, KeyProvider] = {}
    if Scheme.FILE in schemes:
        from ext_proc.keys.file import FileProvider

        providers[Scheme.FILE] = FileProvider(keep=cfg.keep_versions)
    if schemes & {Scheme.VAULT_KV, Scheme.VAULT_TRANSIT}:
        from ext_proc.keys.vault import VaultProvider

        vault = VaultProvider(cfg.vault)
        providers[Scheme.VAULT_KV] = providers[Scheme.VAULT_TRANSIT] = vault
    if schemes & {Scheme.SSM, Scheme.KMS}:
        from ext_proc.keys.aws import AwsProvider

        aws = AwsProvider(cfg.aws)
        providers[Scheme.SSM] = providers[Scheme.KMS] = aws
    return Keyring(refs, providers, keep=cfg.keep_versions)


async def load_keys(settings: Settings) -> Keyring:
    """Build the keyring for ``settings.keys`` and fetch every key; raise
    :class:`KeyProviderError` naming each key that failed."""
    keyring = build_keyring(settings.keys)
    failed = [s for s in await keyring.refresh() if not s.ok]
    if failed:
        await keyring.close()
        raise KeyProviderError("; ".join(f"keys.{s.name} ({s.ref}): {s.error}" for s in failed))
    return keyring
