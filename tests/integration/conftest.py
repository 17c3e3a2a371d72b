"""Fixtures that start Debian's redis-server on loopback ports and stop it by PID."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from ext_proc.devstack import Proc, start_redis, start_redis_cluster


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
