"""A real S3-compatible server for the file store's tests: ``moto_server`` (the moto[server] extra)
on a free loopback port, started once per pytest worker and stopped after; a fresh bucket per test."""

from __future__ import annotations

import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiobotocore.session import AioSession, get_session
from pydantic import SecretStr

from core.settings import Settings
from devnet.processes import ManagedProcess, free_port, port_open

REGION = "us-east-1"
# moto accepts any key pair; real ones are never in a test.
ACCESS_KEY_ID, SECRET_ACCESS_KEY = "virtuoz-test-key-id", "virtuoz-test-secret-key"


@dataclass(frozen=True)
class S3Server:
    endpoint_url: str
    session: AioSession = field(default_factory=get_session)  # one model load for the test's clients

    @asynccontextmanager
    async def client(self) -> AsyncIterator[Any]:
        """A client of the test's own, to look at the bucket from outside the store."""
        async with self.session.create_client(
                "s3", endpoint_url=self.endpoint_url, region_name=REGION, aws_access_key_id=ACCESS_KEY_ID,
                aws_secret_access_key=SECRET_ACCESS_KEY) as client:
            yield client

    async def new_bucket(self) -> str:
        """A bucket of the test's own: nothing another test stored (or left behind) is seen."""
        bucket = f"virtuoz-test-{uuid.uuid4().hex[:16]}"
        async with self.client() as client:
            await client.create_bucket(Bucket=bucket)
        return bucket

    def settings(self, settings: Settings, bucket: str, prefix: str = "virtuoz") -> Settings:
        return settings.model_copy(update={
            "file_store": f"s3://{bucket}/{prefix}", "s3_endpoint_url": self.endpoint_url, "s3_region": REGION,
            "s3_access_key_id": SecretStr(ACCESS_KEY_ID), "s3_secret_access_key": SecretStr(SECRET_ACCESS_KEY)})


@pytest.fixture(scope="session")
def s3_server(servers_dir: Path) -> Iterator[S3Server]:
    port = free_port()
    moto = Path(sys.executable).parent / "moto_server"
    server = ManagedProcess("moto_server", [str(moto), "-H", "127.0.0.1", "-p", str(port)],
                            log_path=servers_dir / "moto_server.log").start()
    try:
        server.wait_until(lambda: port_open(port))  # raises, with the server's log, if it never listens
        yield S3Server(f"http://127.0.0.1:{port}")
    finally:
        server.stop()


@pytest.fixture
async def s3_bucket(s3_server: S3Server) -> str:
    return await s3_server.new_bucket()
