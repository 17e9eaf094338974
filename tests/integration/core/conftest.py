"""A real S3-compatible server for the file store's tests (tests.s3_server), started once per
pytest worker and stopped after; a fresh bucket per test."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.s3_server import S3Server, start_moto


@pytest.fixture(scope="session")
def s3_server(servers_dir: Path) -> Iterator[S3Server]:
    server, s3 = start_moto(servers_dir)
    try:
        yield s3
    finally:
        server.stop()


@pytest.fixture
async def s3_bucket(s3_server: S3Server) -> str:
    return await s3_server.new_bucket()
