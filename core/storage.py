"""File storage for evidence, KYC documents and compliance reports: sharded paths, atomic writes,
streamed size limits.

The interface (``FileStore``) is what services use; ``core.file_stores.file_store(settings, area)`` builds the one
the settings ask for: ``LocalFileStore`` keeps files under a directory of this host,
``core.storage_s3.S3FileStore`` (``VIRTUOZ_FILE_STORE=s3://bucket/prefix``) in a bucket every API
replica and worker shares, with the same guarantees. Paths always come from the file's id
(``shard_path``), never from a client's filename.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Literal, Protocol

from sqlalchemy.ext.asyncio import AsyncSession

from core.db import after_commit, on_rollback
from core.errors import InvalidInput, PayloadTooLarge

CHUNK = 64 * 1024

# Evidence and KYC documents share one area (their ids are UUIDs); reports have their own.
Area = Literal["evidence", "reports"]


class InvalidStorageKey(InvalidInput):
    code, message = "invalid_storage_key", "The storage key is not allowed."


def shard_path(key: str) -> str:
    """``ab/cd/<key>``: two levels of directories from a hash of the key, so no directory grows
    without bound. Keys are single path segments: no ``..``, no separators, no NUL, not absolute."""
    if (not key or len(key) > 200 or "\0" in key or "/" in key or "\\" in key or key in (".", "..")
            or ".." in key or PurePosixPath(key).is_absolute() or not key.isprintable()):
        raise InvalidStorageKey(details={"key": key[:200].replace("\0", "\\0")})
    digest = hashlib.sha256(key.encode()).hexdigest()
    return f"{digest[:2]}/{digest[2:4]}/{key}"


@dataclass(frozen=True)
class IncomingFile:
    """An upload as the client sent it: a declared name and type (both untrusted), and the bytes as they arrive."""

    filename: str | None
    content_type: str | None
    chunks: AsyncIterator[bytes]


@dataclass(frozen=True)
class StoredFile:
    key: str
    size: int
    sha256: str


class FileStore(Protocol):
    """``save`` streams, refuses past ``max_bytes`` and makes the file visible only once complete
    (a failed save leaves nothing); ``read`` streams (``FileNotFoundError`` for an unknown key);
    ``discard`` of a missing file is not an error; ``close`` releases connections (the store is
    not used after it)."""

    async def save(self, key: str, chunks: AsyncIterator[bytes], *, max_bytes: int) -> StoredFile: ...

    def read(self, key: str) -> AsyncIterator[bytes]: ...

    async def exists(self, key: str) -> bool: ...

    async def discard(self, key: str) -> None: ...

    async def close(self) -> None: ...


def close_after_transaction(session: AsyncSession, store: FileStore) -> None:
    """Close ``store`` once ``session``'s transaction is settled: its rollback may still discard
    files through it (``on_rollback(session, store.discard, key)``)."""
    after_commit(session, store.close)
    on_rollback(session, store.close)


class Measured:
    """The chunks of an upload, counted and hashed as they pass; past ``max_bytes`` it raises at once
    (413), before the chunk that crosses the limit is stored. Every file store saves through it."""

    def __init__(self, chunks: AsyncIterator[bytes], max_bytes: int) -> None:
        self.chunks, self.max_bytes = chunks, max_bytes
        self.size, self.digest = 0, hashlib.sha256()

    async def __aiter__(self) -> AsyncIterator[bytes]:
        async for chunk in self.chunks:
            self.size += len(chunk)
            if self.size > self.max_bytes:
                raise PayloadTooLarge(details={"max_bytes": self.max_bytes})
            self.digest.update(chunk)
            yield chunk

    def stored(self, key: str) -> StoredFile:
        return StoredFile(key, self.size, self.digest.hexdigest())


class LocalFileStore:
    def __init__(self, root: Path) -> None:
        self.root = root

    def _path(self, key: str) -> Path:
        return self.root / shard_path(key)

    async def save(self, key: str, chunks: AsyncIterator[bytes], *, max_bytes: int) -> StoredFile:
        """Stream to a temporary file, then rename: a reader never sees half a file, and an upload
        over ``max_bytes`` is refused as soon as it crosses the limit, leaving nothing behind."""
        final = self._path(key)
        temporary = self.root / ".incoming" / f"{uuid.uuid4()}.part"
        await asyncio.to_thread(temporary.parent.mkdir, parents=True, exist_ok=True)
        measured = Measured(chunks, max_bytes)
        handle = await asyncio.to_thread(open, temporary, "wb")
        try:
            async for chunk in measured:
                await asyncio.to_thread(handle.write, chunk)
            await asyncio.to_thread(handle.flush)
            await asyncio.to_thread(os.fsync, handle.fileno())
            handle.close()
            await asyncio.to_thread(final.parent.mkdir, parents=True, exist_ok=True)
            await asyncio.to_thread(os.replace, temporary, final)
        except BaseException:
            handle.close()
            temporary.unlink(missing_ok=True)
            raise
        return measured.stored(key)

    async def read(self, key: str) -> AsyncIterator[bytes]:
        handle = await asyncio.to_thread(open, self._path(key), "rb")
        try:
            while chunk := await asyncio.to_thread(handle.read, CHUNK):
                yield chunk
        finally:
            handle.close()

    async def exists(self, key: str) -> bool:
        return await asyncio.to_thread(self._path(key).exists)

    async def discard(self, key: str) -> None:
        """Remove a file whose database row did not commit (never used to delete evidence)."""
        await asyncio.to_thread(self._path(key).unlink, True)

    async def close(self) -> None:
        """Nothing to release: every call opens and closes its own file."""
