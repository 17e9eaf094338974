"""A real S3-compatible server for tests: ``moto_server`` (the moto[server] extra) on a free loopback
port, and what a test does with it: a bucket of its own, a look at what the store wrote, the
settings (or the environment) that point the platform's file store at it."""

from __future__ import annotations

import sys
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

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

    async def objects(self, bucket: str) -> dict[str, bytes]:
        """Every object in ``bucket``, by key."""
        async with self.client() as client:
            listing = await client.list_objects_v2(Bucket=bucket)
            found = {}
            for item in listing.get("Contents", []):
                response = await client.get_object(Bucket=bucket, Key=item["Key"])
                async with response["Body"] as body:
                    found[item["Key"]] = await body.read()
            return found

    def settings(self, settings: Settings, bucket: str, prefix: str = "virtuoz") -> Settings:
        return settings.model_copy(update={
            "file_store": f"s3://{bucket}/{prefix}", "s3_endpoint_url": self.endpoint_url, "s3_region": REGION,
            "s3_access_key_id": SecretStr(ACCESS_KEY_ID), "s3_secret_access_key": SecretStr(SECRET_ACCESS_KEY)})

    def environment(self, bucket: str, prefix: str = "virtuoz") -> dict[str, str]:
        """The same settings for processes: their VIRTUOZ_* variables."""
        return {"VIRTUOZ_FILE_STORE": f"s3://{bucket}/{prefix}", "VIRTUOZ_S3_ENDPOINT_URL": self.endpoint_url,
                "VIRTUOZ_S3_REGION": REGION, "VIRTUOZ_S3_ACCESS_KEY_ID": ACCESS_KEY_ID,
                "VIRTUOZ_S3_SECRET_ACCESS_KEY": SECRET_ACCESS_KEY}


def start_moto(log_dir: Path) -> tuple[ManagedProcess, S3Server]:
    """A moto server listening (raises, with its log, if it never does); the caller stops it."""
    port = free_port()
    moto = Path(sys.executable).parent / "moto_server"
    server = ManagedProcess("moto_server", [str(moto), "-H", "127.0.0.1", "-p", str(port)],
                            log_path=log_dir / "moto_server.log").start()
    try:
        server.wait_until(lambda: port_open(port))
    except BaseException:
        server.stop()
        raise
    return server, S3Server(f"http://127.0.0.1:{port}")
