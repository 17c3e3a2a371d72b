"""The Redis URL forms other than redis://: TLS (rediss://) and Sentinel, against real servers."""

from __future__ import annotations

import asyncio
import datetime as dt
import ipaddress
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from ext_proc.config import settings_from_mapping
from ext_proc.devstack import Proc, free_port, start_redis
from ext_proc.limiter import LimitVerdict, make_limiter
from ext_proc.metrics import Metrics

pytestmark = pytest.mark.redis


def _cert(
    subject: str, key: ec.EllipticCurvePrivateKey, issuer: tuple[str, ec.EllipticCurvePrivateKey]
) -> x509.Certificate:
    now = dt.datetime.now(dt.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
        .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer[0])]))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(hours=1))
    )
    if subject == issuer[0]:
        builder = builder.add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
    else:
        san = x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))])
        builder = builder.add_extension(san, False)
    return builder.sign(issuer[1], hashes.SHA256())


def _pem(path: Path, data: bytes) -> str:
    path.write_bytes(data)
    return str(path)


@pytest.fixture
def tls_redis(tmp_path: Path) -> Iterator[tuple[int, Path]]:
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = _cert("godel-test-ca", ca_key, ("godel-test-ca", ca_key))
    key = ec.generate_private_key(ec.SECP256R1())
    cert = _cert("127.0.0.1", key, ("godel-test-ca", ca_key))
    ca_file = Path(_pem(tmp_path / "ca.pem", ca.public_bytes(serialization.Encoding.PEM)))
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    port = free_port()
    proc, _ = start_redis(
        tmp_path,
        port,
        extra=(
            "--port",
            "0",
            "--tls-port",
            str(port),
            "--tls-cert-file",
            _pem(tmp_path / "cert.pem", cert.public_bytes(serialization.Encoding.PEM)),
            "--tls-key-file",
            _pem(tmp_path / "key.pem", key_pem),
            "--tls-ca-cert-file",
            str(ca_file),
            "--tls-auth-clients",
            "no",
        ),
    )
    try:
        yield port, ca_file
    finally:
        proc.stop(grace=2)


def _check(url: str, **redis_cfg: object) -> LimitVerdict:
    settings = settings_from_mapping(
        {"limiter": {"backend": "redis", "redis": {"url": url, **redis_cfg}}}, env={}
    )

    async def go() -> LimitVerdict:
        lim = make_limiter(settings.limiter, Metrics())
        try:
            await lim.start()
            return await lim.check("alice")
        finally:
            await lim.close()

    return asyncio.run(go())


def test_rediss_verifies_the_server_against_the_configured_ca(
    tls_redis: tuple[int, Path], tmp_path: Path
) -> None:
    port, ca_file = tls_redis
    url = f"rediss://127.0.0.1:{port}/0"
    assert _check(url, tls_ca_file=str(ca_file)).source == "redis"
    # A CA that did not sign the server's certificate: no connection, the failure policy answers.
    other_key = ec.generate_private_key(ec.SECP256R1())
    other = _cert("someone-else", other_key, ("someone-else", other_key))
    wrong_ca = _pem(tmp_path / "wrong-ca.pem", other.public_bytes(serialization.Encoding.PEM))
    assert _check(url, tls_ca_file=wrong_ca).source == "local"


@pytest.mark.skipif(shutil.which("redis-server") is None, reason="needs redis-server")
def test_sentinel_url_finds_the_primary(tmp_path: Path) -> None:
    primary, primary_port = start_redis(tmp_path, name="primary")
    sentinel_port = free_port()
    conf = tmp_path / "sentinel.conf"
    conf.write_text(
        f"port {sentinel_port}\nbind 127.0.0.1\ndir {tmp_path}\n"
        f"sentinel monitor godel-main 127.0.0.1 {primary_port} 1\n"
        "sentinel down-after-milliseconds godel-main 5000\n"
    )
    sentinel = Proc(
        "sentinel",
        [shutil.which("redis-server") or "redis-server", str(conf), "--sentinel"],
        tmp_path / "sentinel.log",
    ).start()
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                if redis.Redis(port=sentinel_port).sentinel_masters():
                    break
            except redis.ConnectionError:
                pass
            assert time.monotonic() < deadline, sentinel.log_tail()
            time.sleep(0.1)
        verdict = _check(f"redis+sentinel://127.0.0.1:{sentinel_port}/godel-main/0")
        assert verdict.source == "redis"
        assert redis.Redis(port=primary_port).dbsize() == 1  # the bucket is on the primary
    finally:
        sentinel.stop(grace=2)
        primary.stop(grace=2)
