"""The file store in an S3-compatible bucket (AWS S3, MinIO, moto): ``VIRTUOZ_FILE_STORE=s3://bucket/prefix``.

The same guarantees as ``LocalFileStore``, from what S3 itself promises: a PUT, or a completed
multipart upload, makes an object visible whole and at once (the rename of the local store); an
aborted multipart upload leaves nothing. Keys are the local store's sharded paths under the
prefix and the area: ``<prefix>/evidence/ab/cd/<id>`` is ``<data_dir>/evidence/ab/cd/<id>``.

The credentials stay in ``SecretStr`` until the client is built; neither they nor a request
signature are ever put in a log line or an error.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from typing import Any
from urllib.parse import urlsplit

from aiobotocore.config import AioConfig
from aiobotocore.session import AioSession, get_session
from botocore.exceptions import BotoCoreError, ClientError
from pydantic import SecretStr

from core.settings import Settings
from core.storage import CHUNK, Area, Measured, StoredFile, shard_path

log = logging.getLogger(__name__)

# S3 refuses parts under 5 MiB (all but the last). Up to one part is held in memory per upload:
# a 10 MiB evidence file goes up in two parts, never whole.
MIN_PART_BYTES = 5 * 1024 * 1024
PART_BYTES = 8 * 1024 * 1024
_MISSING = {"NoSuchKey", "NotFound", "404"}
_sessions = threading.local()


def _session() -> AioSession:
    """One botocore session per thread: it caches the S3 service model (a second to load) for every
    client built after the first, and botocore sessions are not shared across threads."""
    if not hasattr(_sessions, "session"):
        _sessions.session = get_session()
    return _sessions.session


def _bucket_and_prefix(url: str) -> tuple[str, str]:
    parts = urlsplit(url)
    return parts.netloc, parts.path.strip("/")


class S3FileStore:
    def __init__(self, bucket: str, prefix: str = "", *, endpoint_url: str | None = None, region: str | None = None,
                 access_key_id: SecretStr | None = None, secret_access_key: SecretStr | None = None,
                 part_bytes: int = PART_BYTES) -> None:
        if part_bytes < MIN_PART_BYTES:
            raise ValueError(f"S3 parts are at least {MIN_PART_BYTES} bytes")
        self.bucket = bucket
        self.prefix = "".join(f"{segment}/" for segment in prefix.split("/") if segment)
        self.part_bytes = part_bytes
        self._endpoint_url, self._region = endpoint_url, region
        self._access_key_id, self._secret_access_key = access_key_id, secret_access_key
        self._client: Any = None
        self._stack: AsyncExitStack | None = None
        self._opening = asyncio.Lock()

    @classmethod
    def from_settings(cls, settings: Settings, area: Area) -> S3FileStore:
        assert settings.file_store is not None
        bucket, prefix = _bucket_and_prefix(settings.file_store)
        return cls(bucket, f"{prefix}/{area}", endpoint_url=settings.s3_endpoint_url, region=settings.s3_region,
                   access_key_id=settings.s3_access_key_id, secret_access_key=settings.s3_secret_access_key)

    def __repr__(self) -> str:
        return f"S3FileStore(bucket={self.bucket!r}, prefix={self.prefix!r})"

    def object_key(self, key: str) -> str:
        return self.prefix + shard_path(key)

    async def _s3(self) -> Any:
        """The client, built on first use: it belongs to the event loop that builds it."""
        if self._client is not None:
            return self._client
        async with self._opening:
            if self._client is None:
                config = AioConfig(
                    connect_timeout=10, read_timeout=60, retries={"max_attempts": 5, "mode": "standard"},
                    # MinIO and other self-hosted services are reached by an address, not a
                    # bucket-per-hostname DNS name.
                    s3={"addressing_style": "path"} if self._endpoint_url else None)
                stack = AsyncExitStack()
                self._client = await stack.enter_async_context(_session().create_client(
                    "s3", endpoint_url=self._endpoint_url, region_name=self._region, config=config,
                    aws_access_key_id=_reveal(self._access_key_id),
                    aws_secret_access_key=_reveal(self._secret_access_key)))
                self._stack = stack
            return self._client

    async def close(self) -> None:
        async with self._opening:
            stack, self._stack, self._client = self._stack, None, None
            if stack is not None:
                await stack.aclose()

    async def save(self, key: str, chunks: AsyncIterator[bytes], *, max_bytes: int) -> StoredFile:
        """Up to one part: a single PUT. Beyond: a multipart upload, each part sent as soon as it is
        full, completed at the end. Over ``max_bytes`` the upload is refused as soon as it crosses the
        limit; on that or any other failure (a broken stream, a cancelled request) the multipart
        upload is aborted, so no object appears and no parts stay behind (S3 keeps and bills them)."""
        object_key = self.object_key(key)  # refuses a bad key before anything is sent
        client = await self._s3()
        measured, pending = Measured(chunks, max_bytes), bytearray()
        upload_id: str | None = None
        parts: list[dict[str, Any]] = []
        try:
            async for chunk in measured:
                pending += chunk
                while len(pending) >= self.part_bytes:
                    if upload_id is None:
                        created = await client.create_multipart_upload(Bucket=self.bucket, Key=object_key)
                        upload_id = created["UploadId"]
                    part = bytes(pending[:self.part_bytes])
                    del pending[:self.part_bytes]
                    parts.append(await self._upload_part(client, object_key, upload_id, len(parts) + 1, part))
            if upload_id is None:
                await client.put_object(Bucket=self.bucket, Key=object_key, Body=bytes(pending))
            else:
                if pending:
                    parts.append(await self._upload_part(client, object_key, upload_id, len(parts) + 1,
                                                         bytes(pending)))
                await client.complete_multipart_upload(Bucket=self.bucket, Key=object_key, UploadId=upload_id,
                                                       MultipartUpload={"Parts": parts})
        except BaseException:
            if upload_id is not None:
                # Shielded: a request cancelled while uploading must still abort what it began.
                await asyncio.shield(self._abort(client, object_key, upload_id))
            raise
        return measured.stored(key)

    async def _upload_part(self, client: Any, object_key: str, upload_id: str, number: int,
                           body: bytes) -> dict[str, Any]:
        uploaded = await client.upload_part(Bucket=self.bucket, Key=object_key, UploadId=upload_id,
                                            PartNumber=number, Body=body)
        return {"ETag": uploaded["ETag"], "PartNumber": number}

    async def _abort(self, client: Any, object_key: str, upload_id: str) -> None:
        try:
            await client.abort_multipart_upload(Bucket=self.bucket, Key=object_key, UploadId=upload_id)
        except (BotoCoreError, ClientError) as error:
            # The original failure is the one to raise; a bucket lifecycle rule
            # (AbortIncompleteMultipartUpload) removes what is left (README, "Escrow and disputes").
            log.warning("could not abort the multipart upload of %s: %s", object_key, type(error).__name__)

    async def read(self, key: str) -> AsyncIterator[bytes]:
        object_key = self.object_key(key)
        client = await self._s3()
        try:
            response = await client.get_object(Bucket=self.bucket, Key=object_key)
        except ClientError as error:
            if _code(error) in _MISSING:
                raise FileNotFoundError(f"no stored file {key!r}") from None
            raise
        body = response["Body"]
        try:
            while chunk := await body.read(CHUNK):
                yield chunk
        finally:
            body.close()

    async def exists(self, key: str) -> bool:
        object_key = self.object_key(key)
        client = await self._s3()
        try:
            await client.head_object(Bucket=self.bucket, Key=object_key)
        except ClientError as error:
            if _code(error) in _MISSING:
                return False
            raise
        return True

    async def discard(self, key: str) -> None:
        """Remove a file whose database row did not commit (never used to delete evidence); S3
        answers a DELETE of a missing key with success too."""
        object_key = self.object_key(key)
        client = await self._s3()
        await client.delete_object(Bucket=self.bucket, Key=object_key)


def _reveal(secret: SecretStr | None) -> str | None:
    return None if secret is None else secret.get_secret_value()


def _code(error: ClientError) -> str:
    return str(error.response.get("Error", {}).get("Code", ""))
