"""``ssm:`` and ``kms:`` keys from AWS, through boto3.

Credentials come from boto3's standard chain: on EKS, IRSA (``AWS_ROLE_ARN`` and
``AWS_WEB_IDENTITY_TOKEN_FILE``, both pointers set by the pod identity webhook, exchanged for
short-lived credentials by ``sts:AssumeRoleWithWebIdentity``) or EKS Pod Identity; elsewhere an
instance profile or a shared credentials file. Godel never takes an access key from its own
configuration. ``keys.aws.kms_endpoint_url`` / ``ssm_endpoint_url`` point at VPC interface
endpoints (or a test server).

SSM: ``GetParameter`` with decryption; only ``SecureString`` parameters are accepted, and the
parameter's version number is the key version. KMS: ``GenerateDataKey`` (AES_256) and
``Decrypt`` with the encryption context; KMS binds the context as AAD and refuses a different
one. ``Decrypt`` names the expected key, so a blob wrapped by another key is refused. KMS key
rotation keeps older backing keys, so wraps made before a rotation still decrypt; the key id
reported is the key's ARN (KMS does not expose backing-key versions).

botocore logs HTTP response bodies at DEBUG level, and KMS/SSM responses hold plaintext keys,
so creating this provider caps the ``botocore`` logger at INFO.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Literal, TypeVar

import boto3
import botocore.config
import botocore.exceptions

from ext_proc.errors import KeyProviderError, KeyUnwrapError
from ext_proc.keys._secret import SecretBytes
from ext_proc.keys.base import DataKey, KeyVersion
from ext_proc.keys.refs import KeyRef, Scheme

if TYPE_CHECKING:
    from mypy_boto3_kms import KMSClient
    from mypy_boto3_ssm import SSMClient

    from ext_proc.config import AwsSettings

__all__ = ["AwsProvider"]

T = TypeVar("T")

_UNWRAP_REFUSED = {"InvalidCiphertextException", "IncorrectKeyException"}


def cap_botocore_logging() -> None:
    """Keep botocore from logging request and response bodies (they carry key material)."""
    for name in ("botocore", "boto3"):
        logger = logging.getLogger(name)
        if logger.getEffectiveLevel() < logging.INFO or logger.level < logging.INFO:
            logger.setLevel(logging.INFO)


def _reason(exc: BaseException) -> str:
    if isinstance(exc, botocore.exceptions.ClientError):
        err = exc.response.get("Error", {})
        return f"{err.get('Code', 'error')}: {err.get('Message', '')}".rstrip(": ")
    if isinstance(exc, botocore.exceptions.NoCredentialsError):
        return "no AWS credentials found (IRSA, Pod Identity, instance profile or shared file)"
    if isinstance(exc, botocore.exceptions.NoRegionError):
        return "no AWS region (set keys.aws.region)"
    if isinstance(exc, botocore.exceptions.EndpointConnectionError):
        return "cannot connect to the endpoint"
    return f"{type(exc).__name__}: {exc}"


class AwsProvider:
    name = "aws"

    def __init__(self, cfg: AwsSettings) -> None:
        cap_botocore_logging()
        self.cfg = cfg
        self._session = boto3.session.Session(region_name=cfg.region)
        self._config = botocore.config.Config(
            connect_timeout=cfg.timeout_seconds,
            read_timeout=cfg.timeout_seconds,
            retries={"mode": "standard", "max_attempts": 3},
        )
        self._kms_client: KMSClient | None = None
        self._ssm_client: SSMClient | None = None

    def _client(self, service: Literal["kms", "ssm"]) -> Any:
        if service == "kms":
            if self._kms_client is None:
                self._kms_client = self._session.client(
                    "kms", endpoint_url=self.cfg.kms_endpoint_url, config=self._config
                )
            return self._kms_client
        if self._ssm_client is None:
            self._ssm_client = self._session.client(
                "ssm", endpoint_url=self.cfg.ssm_endpoint_url, config=self._config
            )
        return self._ssm_client

    async def _run(self, what: str, call: Callable[[], T]) -> T:
        try:
            return await asyncio.to_thread(call)
        except Exception as exc:
            raise KeyProviderError(f"{what}: {_reason(exc)}") from None

    async def fetch(self, ref: KeyRef) -> KeyVersion:
        if ref.scheme is not Scheme.SSM:
            raise KeyProviderError(f"{ref}: only ssm: references hold fetchable secrets")
        ssm = self._client("ssm")
        resp = await self._run(
            str(ref), lambda: ssm.get_parameter(Name=ref.path, WithDecryption=True)
        )
        param = resp["Parameter"]
        if param.get("Type") != "SecureString":
            raise KeyProviderError(
                f"{ref}: is a {param.get('Type')} parameter; keys must be SecureString"
            )
        version = str(param["Version"])
        return KeyVersion(ref.key_id(version), version, SecretBytes(param["Value"].encode()))

    def _kms(self, ref: KeyRef) -> Any:
        if ref.scheme is not Scheme.KMS:
            raise KeyProviderError(f"{ref}: only kms: references wrap data keys here")
        return self._client("kms")

    async def generate_data_key(self, ref: KeyRef, context: Mapping[str, str]) -> DataKey:
        kms = self._kms(ref)
        resp = await self._run(
            str(ref),
            lambda: kms.generate_data_key(
                KeyId=ref.path, KeySpec="AES_256", EncryptionContext=dict(context)
            ),
        )
        return DataKey(
            SecretBytes(resp["Plaintext"]), bytes(resp["CiphertextBlob"]), f"kms:{resp['KeyId']}"
        )

    async def unwrap(self, ref: KeyRef, wrapped: bytes, context: Mapping[str, str]) -> SecretBytes:
        kms = self._kms(ref)

        def call() -> Any:
            return kms.decrypt(
                CiphertextBlob=wrapped, EncryptionContext=dict(context), KeyId=ref.path
            )

        try:
            resp = await asyncio.to_thread(call)
        except botocore.exceptions.ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in _UNWRAP_REFUSED:
                raise KeyUnwrapError(
                    f"{ref}: data key refused (wrong encryption context, another key or corrupt "
                    f"ciphertext): {_reason(exc)}"
                ) from None
            raise KeyProviderError(f"{ref}: {_reason(exc)}") from None
        except Exception as exc:
            raise KeyProviderError(f"{ref}: {_reason(exc)}") from None
        return SecretBytes(resp["Plaintext"])

    async def check(self) -> str:
        def call() -> str:
            creds = self._session.get_credentials()
            if creds is None:
                raise botocore.exceptions.NoCredentialsError()
            return str(creds.method)

        method = await self._run("aws", call)
        region = self._session.region_name or "unset"
        return f"aws region {region}: credentials from {method}"

    async def close(self) -> None:
        for client in (self._kms_client, self._ssm_client):
            if client is not None:
                client.close()
        self._kms_client = self._ssm_client = None
