"""Key providers against real servers: an OpenBao dev server (Vault API) and moto_server (AWS
KMS and SSM), each started once for this module on a loopback port and stopped by PID.

Every key used here is random per run; the leak tests look for its bytes (raw, hex, base64)
in reprs, logs, exception text, the process environment and a ``godel keys check`` run.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import hvac
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ext_proc.config import Settings, settings_from_mapping
from ext_proc.errors import KeyProviderError, KeyUnwrapError
from ext_proc.keys import Keyring, SecretBytes, load_keys
from tests.integration.conftest import Bao, Moto

pytestmark = pytest.mark.keys

POLICY = """
path "secret/data/godel" { capabilities = ["read"] }
path "transit/datakey/plaintext/audit" { capabilities = ["update"] }
path "transit/decrypt/audit" { capabilities = ["update"] }
"""


def rand_key() -> str:
    return base64.b64encode(os.urandom(36)).decode()


@dataclass
class VaultEnv:
    bao: Bao
    root: hvac.Client
    work: Path
    token_file: Path
    role_id_file: Path
    secret_id_file: Path
    jwt_file: Path
    materials: list[str]

    def put(self, **fields: str) -> None:
        self.materials.extend(fields.values())
        self.root.secrets.kv.v2.create_or_update_secret(
            path="godel", secret=fields, mount_point="secret"
        )

    def settings(self, auth: str = "token", **keys: Any) -> Settings:
        vault: dict[str, Any] = {
            "url": self.bao.url,
            "ca_file": str(self.bao.ca_file),
            "auth": auth,
            "token_file": str(self.token_file),
            "role_id_file": str(self.role_id_file),
            "secret_id_file": str(self.secret_id_file),
            "jwt_file": str(self.jwt_file),
            "role": "godel",
        }
        return settings_from_mapping({"keys": {**keys, "vault": vault}}, env={})


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def mint_jwt(key: Ed25519PrivateKey, claims: dict[str, Any]) -> str:
    """A signed JWT like a projected service-account token (EdDSA)."""
    header = _b64url(json.dumps({"alg": "EdDSA", "typ": "JWT"}).encode())
    body = _b64url(json.dumps(claims).encode())
    signature = key.sign(f"{header}.{body}".encode())
    return f"{header}.{body}.{_b64url(signature)}"


@pytest.fixture(scope="module")
def vault(bao: Bao, tmp_path_factory: pytest.TempPathFactory) -> VaultEnv:
    work = tmp_path_factory.mktemp("vault-auth")
    root = bao.root()
    root.sys.create_or_update_policy("godel", POLICY)
    root.sys.enable_secrets_engine("transit", path="transit")
    root.write_data("transit/keys/audit", data={"type": "aes256-gcm96"})
    # a token with the godel policy only, in a file (as a Vault Agent sink would hold it)
    token = root.auth.token.create(policies=["godel"], ttl="1h")["auth"]["client_token"]
    token_file = work / "token"
    token_file.write_text(token)
    # AppRole
    root.sys.enable_auth_method("approle")
    root.auth.approle.create_or_update_approle("godel", token_policies=["godel"], token_ttl="1h")
    role_id = root.auth.approle.read_role_id("godel")["data"]["role_id"]
    secret_id = root.auth.approle.generate_secret_id("godel")["data"]["secret_id"]
    (work / "role-id").write_text(role_id)
    (work / "secret-id").write_text(secret_id)
    # JWT auth with a static public key: the offline stand-in for Kubernetes auth
    signer = Ed25519PrivateKey.generate()
    pem = (
        signer.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    root.sys.enable_auth_method("jwt")
    root.write_data("auth/jwt/config", data={"jwt_validation_pubkeys": [pem]})
    root.write_data(
        "auth/jwt/role/godel",
        data={
            "role_type": "jwt",
            "user_claim": "sub",
            "bound_audiences": ["vault"],
            "bound_subject": "system:serviceaccount:godel:godel",
            "token_policies": ["godel"],
            "token_ttl": "1h",
        },
    )
    now = int(time.time())
    jwt_file = work / "sa-token"
    jwt_file.write_text(
        mint_jwt(
            signer,
            {
                "iss": "https://kubernetes.default.svc",
                "sub": "system:serviceaccount:godel:godel",
                "aud": ["vault"],
                "iat": now,
                "nbf": now,
                "exp": now + 3600,
            },
        )
    )
    env = VaultEnv(bao, root, work, token_file, work / "role-id", work / "secret-id", jwt_file, [])
    env.put(pseudonym=rand_key(), redaction=rand_key())
    return env


# -- Vault / OpenBao --------------------------------------------------------------------------
def test_kv_fetch_and_new_version_on_refresh(vault: VaultEnv) -> None:
    settings = vault.settings(pseudonym="vault-kv:secret/godel#pseudonym")

    async def run() -> None:
        ring = await load_keys(settings)
        first = ring.current("pseudonym")
        number = int(first.version.removeprefix("v"))
        assert first.key_id == f"vault-kv:secret/godel#pseudonym@v{number}"
        assert first.material.reveal().decode() == vault.materials[-2]
        assert not (await ring.refresh())[0].changed
        vault.put(pseudonym=rand_key(), redaction=rand_key())
        [status] = await ring.refresh()
        assert status.changed
        assert status.key_id == f"vault-kv:secret/godel#pseudonym@v{number + 1}"
        assert ring.current("pseudonym").material.reveal().decode() == vault.materials[-2]
        assert ring.get("pseudonym", first.key_id) == first  # the previous version is kept
        assert ring.get("pseudonym", first.key_id).material == first.material
        await ring.close()

    asyncio.run(run())


def test_kv_errors_name_the_reference(vault: VaultEnv) -> None:
    settings = vault.settings(
        audit="vault-kv:secret/godel#nope", redaction="vault-kv:secret/other#x"
    )
    with pytest.raises(KeyProviderError) as info:
        asyncio.run(load_keys(settings))
    text = str(info.value)
    assert "keys.audit (vault-kv:secret/godel#nope): " in text
    assert "no field 'nope' (fields: pseudonym, redaction)" in text
    assert "keys.redaction (vault-kv:secret/other#x): " in text
    assert "Forbidden" in text  # the godel policy reads secret/data/godel only


def test_transit_wrap_unwrap_and_rotation(vault: VaultEnv) -> None:
    settings = vault.settings(audit_kek="vault-transit:transit/audit")
    ctx = {"log": "audit", "segment": "000042"}

    async def run() -> None:
        ring = await load_keys(settings)
        dk1 = await ring.generate_data_key("audit_kek", ctx)
        assert dk1.kek_id.startswith("vault-transit:transit/audit@v")
        assert dk1.wrapped.startswith(b"vault:v")
        assert len(dk1.plaintext.reveal()) == 32
        assert await ring.unwrap("audit_kek", dk1.wrapped, ctx) == dk1.plaintext
        with pytest.raises(KeyUnwrapError, match="wrong encryption context"):
            await ring.unwrap("audit_kek", dk1.wrapped, {**ctx, "segment": "000043"})
        with pytest.raises(KeyUnwrapError):
            await ring.unwrap("audit_kek", dk1.wrapped, {})

        vault.root.write_data("transit/keys/audit/rotate")
        dk2 = await ring.generate_data_key("audit_kek", ctx)
        v1 = int(dk1.kek_id.rsplit("@v", 1)[1])
        assert dk2.kek_id == f"vault-transit:transit/audit@v{v1 + 1}"
        assert await ring.unwrap("audit_kek", dk1.wrapped, ctx) == dk1.plaintext  # old wrap
        [status] = await ring.refresh()
        assert status.changed
        assert status.key_id == dk2.kek_id

        vault.root.write_data("transit/keys/audit/config", data={"min_decryption_version": v1 + 1})
        try:
            with pytest.raises(KeyUnwrapError, match="retired key version"):
                await ring.unwrap("audit_kek", dk1.wrapped, ctx)
            assert await ring.unwrap("audit_kek", dk2.wrapped, ctx) == dk2.plaintext
        finally:
            vault.root.write_data("transit/keys/audit/config", data={"min_decryption_version": 1})
        await ring.close()

    asyncio.run(run())


@pytest.mark.parametrize("auth", ["approle", "jwt"])
def test_login_methods(vault: VaultEnv, auth: str) -> None:
    settings = vault.settings(
        auth,
        pseudonym="vault-kv:secret/godel#pseudonym",
        audit_kek="vault-transit:transit/audit",
    )

    async def run() -> None:
        ring = await load_keys(settings)
        [(_name, description, error)] = await ring.check_providers()
        assert error is None
        assert f"authenticated ({auth})" in (description or "")
        assert "godel" in (description or "")
        # revoke the login token: the next call logs in again
        provider: Any = ring._entries["pseudonym"].provider
        vault.root.auth.token.revoke(provider._client.token)
        statuses = await ring.refresh()
        assert all(s.ok for s in statuses), statuses
        await ring.close()

    asyncio.run(run())


def test_token_file_is_reread_when_replaced(vault: VaultEnv) -> None:
    settings = vault.settings(pseudonym="vault-kv:secret/godel#pseudonym")

    async def run() -> None:
        ring = await load_keys(settings)
        old = vault.token_file.read_text()
        new = vault.root.auth.token.create(policies=["godel"], ttl="1h")["auth"]["client_token"]
        tmp = vault.token_file.with_suffix(".new")
        tmp.write_text(new)
        os.replace(tmp, vault.token_file)
        vault.root.auth.token.revoke(old)
        [status] = await ring.refresh()
        assert status.ok, status.error
        await ring.close()

    asyncio.run(run())


def test_tls_needs_the_ca_file(vault: VaultEnv) -> None:
    data = vault.settings(pseudonym="vault-kv:secret/godel#pseudonym").model_dump(mode="json")
    data["keys"]["vault"]["ca_file"] = None
    settings = settings_from_mapping(data, env={})
    with pytest.raises(KeyProviderError, match="TLS verification failed"):
        asyncio.run(load_keys(settings))


# -- AWS (moto) -------------------------------------------------------------------------------
@dataclass
class AwsEnv:
    moto: Moto
    kms: Any
    ssm: Any
    key_id: str
    materials: list[str]

    def put(self, name: str, value: str, kind: str = "SecureString") -> None:
        self.materials.append(value)
        self.ssm.put_parameter(Name=name, Value=value, Type=kind, Overwrite=True)

    def settings(self, **keys: Any) -> Settings:
        aws = {
            "region": "eu-west-1",
            "kms_endpoint_url": self.moto.url,
            "ssm_endpoint_url": self.moto.url,
        }
        return settings_from_mapping({"keys": {**keys, "aws": aws}}, env={})


@pytest.fixture(scope="module")
def aws(moto: Moto) -> AwsEnv:
    kms = boto3.client("kms", region_name="eu-west-1", endpoint_url=moto.url)
    ssm = boto3.client("ssm", region_name="eu-west-1", endpoint_url=moto.url)
    key_id = kms.create_key(Description="godel audit kek")["KeyMetadata"]["KeyId"]
    kms.create_alias(AliasName="alias/godel-audit", TargetKeyId=key_id)
    return AwsEnv(moto, kms, ssm, key_id, [])


def test_ssm_securestring_versions(aws: AwsEnv) -> None:
    aws.put("/godel/pseudonym", rand_key())
    settings = aws.settings(pseudonym="ssm:/godel/pseudonym")

    async def run() -> None:
        ring = await load_keys(settings)
        first = ring.current("pseudonym")
        assert first.key_id == "ssm:/godel/pseudonym@1"
        assert first.material.reveal().decode() == aws.materials[-1]
        aws.put("/godel/pseudonym", rand_key())
        [status] = await ring.refresh()
        assert status.changed
        assert status.key_id == "ssm:/godel/pseudonym@2"
        assert ring.current("pseudonym").material.reveal().decode() == aws.materials[-1]
        assert ring.get("pseudonym", "ssm:/godel/pseudonym@1").material == first.material
        [(_name, description, error)] = await ring.check_providers()
        assert error is None
        assert "shared-credentials-file" in (description or "")
        await ring.close()

    asyncio.run(run())


def test_ssm_plain_string_and_missing_parameter_refused(aws: AwsEnv) -> None:
    aws.ssm.put_parameter(Name="/godel/plain", Value="x" * 40, Type="String", Overwrite=True)
    settings = aws.settings(audit="ssm:/godel/plain", redaction="ssm:/godel/missing")
    with pytest.raises(KeyProviderError) as info:
        asyncio.run(load_keys(settings))
    assert "is a String parameter; keys must be SecureString" in str(info.value)
    assert "keys.redaction (ssm:/godel/missing): ssm:/godel/missing: ParameterNotFound" in str(
        info.value
    )


@pytest.mark.parametrize("ref", ["kms:alias/godel-audit", "key-id"])
def test_kms_data_keys_with_encryption_context(aws: AwsEnv, ref: str) -> None:
    ref = f"kms:{aws.key_id}" if ref == "key-id" else ref
    settings = aws.settings(audit_kek=ref)
    ctx = {"log": "audit", "segment": "7"}

    async def run() -> None:
        ring = await load_keys(settings)
        dk = await ring.generate_data_key("audit_kek", ctx)
        assert dk.kek_id.startswith("kms:arn:aws:kms:eu-west-1:")
        assert dk.kek_id.endswith(aws.key_id)
        assert len(dk.plaintext.reveal()) == 32
        assert await ring.unwrap("audit_kek", dk.wrapped, ctx) == dk.plaintext
        with pytest.raises(KeyUnwrapError, match="InvalidCiphertextException"):
            await ring.unwrap("audit_kek", dk.wrapped, {**ctx, "segment": "8"})
        aws.kms.rotate_key_on_demand(KeyId=aws.key_id)
        assert await ring.unwrap("audit_kek", dk.wrapped, ctx) == dk.plaintext  # after rotation
        await ring.close()

    asyncio.run(run())


def test_kms_refuses_a_blob_of_another_key(aws: AwsEnv) -> None:
    other = aws.kms.create_key(Description="other")["KeyMetadata"]["KeyId"]
    ctx = {"a": "b"}
    blob = aws.kms.generate_data_key(KeyId=other, KeySpec="AES_256", EncryptionContext=ctx)[
        "CiphertextBlob"
    ]
    ring = asyncio.run(load_keys(aws.settings(audit_kek="kms:alias/godel-audit")))
    # KMS answers IncorrectKeyException (-> KeyUnwrapError); moto answers AccessDeniedException
    with pytest.raises(KeyProviderError, match=r"IncorrectKeyException|AccessDeniedException"):
        asyncio.run(ring.unwrap("audit_kek", blob, ctx))


# -- leaks ------------------------------------------------------------------------------------
def _forms(material: bytes) -> list[bytes]:
    return [material, material.hex().encode(), base64.b64encode(material)]


def _assert_absent(haystack: bytes | str, materials: list[bytes], where: str) -> None:
    data = haystack.encode() if isinstance(haystack, str) else haystack
    for material in materials:
        for form in _forms(material):
            assert form not in data, f"key material found in {where}"


@pytest.fixture
def everything(vault: VaultEnv, aws: AwsEnv, tmp_path: Path) -> tuple[Settings, Path, list[bytes]]:
    vault.put(pseudonym=rand_key(), redaction=rand_key())
    aws.put("/godel/audit", rand_key())
    signing = tmp_path / "signing"
    signing.write_bytes(os.urandom(32))
    password = tmp_path / "redis-password"
    password.write_text("correct-horse-battery-staple-" + os.urandom(8).hex())
    keys = {
        "pseudonym": "vault-kv:secret/godel#pseudonym",
        "redaction": "vault-kv:secret/godel#redaction",
        "audit": "ssm:/godel/audit",
        "audit_kek": "vault-transit:transit/audit",
        "audit_signing": f"file:{signing}",
        "redis_password": f"file:{password}",
    }
    data = vault.settings(**keys).model_dump(mode="json")
    data["keys"]["aws"] = aws.settings().keys.aws.model_dump(mode="json")
    settings = settings_from_mapping(data, env={})
    config = tmp_path / "godel.yaml"
    config.write_text(json.dumps(data))
    materials = [m.encode() for m in vault.materials[-2:] + aws.materials[-1:]]
    materials += [signing.read_bytes(), password.read_bytes()]
    return settings, config, materials


def test_no_leaks_in_repr_logs_errors_or_environ(
    everything: tuple[Settings, Path, list[bytes]], caplog: pytest.LogCaptureFixture
) -> None:
    settings, _, materials = everything
    caplog.set_level(logging.DEBUG)

    async def run() -> tuple[Keyring, list[bytes], str]:
        ring = await load_keys(settings)
        seen = [ring.material(n).reveal() for n in ring.names if n != "audit_kek"]
        dk = await ring.generate_data_key("audit_kek", {"x": "y"})
        seen.append(dk.plaintext.reveal())
        back = await ring.unwrap("audit_kek", dk.wrapped, {"x": "y"})
        texts = [repr(ring), repr(dk), str(dk), repr(back), str(back)]
        texts += [repr(ring.current(n)) for n in ring.names if n != "audit_kek"]
        texts += [repr(s) for s in await ring.refresh()]
        for bad in (
            lambda: ring.unwrap("audit_kek", dk.wrapped, {"x": "z"}),
            lambda: ring.generate_data_key("pseudonym", {}),
        ):
            try:
                await bad()
            except KeyProviderError as exc:
                texts.append(f"{exc!r} {exc}")
        await ring.close()
        return ring, seen, "\n".join(texts)

    ring, seen, texts = asyncio.run(run())
    assert sorted(seen[:-1]) == sorted(materials)
    everything_secret = [*materials, seen[-1]]
    _assert_absent(texts, everything_secret, "reprs and exception messages")
    _assert_absent(caplog.text, everything_secret, "logs")
    _assert_absent(Path("/proc/self/environ").read_bytes(), everything_secret, "environ")
    assert isinstance(ring.versions("pseudonym"), tuple)
    assert repr(SecretBytes(materials[0])) == f"SecretBytes(<{len(materials[0])} bytes>)"


def test_no_leaks_from_godel_keys_check(everything: tuple[Settings, Path, list[bytes]]) -> None:
    _, config, materials = everything
    godel = str(Path(sys.executable).with_name("godel"))
    argv = [godel, "keys", "check", "--config", str(config)]
    env = {k: v for k, v in os.environ.items() if not k.startswith("GODEL_")}
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    cmdline = Path(f"/proc/{proc.pid}/cmdline").read_bytes()
    environ = Path(f"/proc/{proc.pid}/environ").read_bytes()
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, (out + err).decode()
    lines = out.decode().splitlines()
    assert any(line.startswith("provider vault: vault https://") for line in lines)
    assert any(line.startswith("provider aws: aws region eu-west-1") for line in lines)
    for name in ("pseudonym", "redaction", "audit", "audit_kek", "audit_signing"):
        [row] = [line for line in lines if line.startswith(f"{name}\t")]
        assert row.endswith("\tOK"), row
        assert "@" in row.split("\t")[2]
    for where, data in (("argv", cmdline), ("environ", environ), ("stdout", out), ("stderr", err)):
        _assert_absent(data, materials, f"godel keys check {where}")


def test_godel_keys_check_reports_failures(vault: VaultEnv, tmp_path: Path) -> None:
    data = vault.settings(
        pseudonym="vault-kv:secret/godel#pseudonym", audit="vault-kv:secret/godel#missing"
    ).model_dump(mode="json")
    config = tmp_path / "godel.yaml"
    config.write_text(json.dumps(data))
    godel = str(Path(sys.executable).with_name("godel"))
    run = subprocess.run(
        [godel, "keys", "check", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert run.returncode == 1, run.stdout + run.stderr
    assert "pseudonym\tvault-kv:secret/godel#pseudonym\tvault-kv:secret/godel#pseudonym@v" in (
        run.stdout
    )
    assert "audit\tvault-kv:secret/godel#missing\t-\tFAILED: " in run.stdout
    _assert_absent(run.stdout + run.stderr, [m.encode() for m in vault.materials], "output")
