"""The file store's guarantees, proven on each implementation: the local directory and S3 (a real
``moto_server``). Services only see ``FileStore``; whichever the settings pick must behave alike."""

from __future__ import annotations

import asyncio
import hashlib
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from core.errors import PayloadTooLarge
from core.file_stores import file_store
from core.settings import Settings, SettingsError
from core.storage import (
    FileStore,
    InvalidStorageKey,
    LocalFileStore,
    shard_path,
)
from core.storage_s3 import PART_BYTES, S3FileStore

MiB = 1024 * 1024


@dataclass
class StoreCase:
    store: FileStore
    stored: Callable[[], Awaitable[set[str]]]  # every complete file, as its path under the area's root
    incomplete: Callable[[], Awaitable[list[str]]]  # local: temporary files; S3: open multipart uploads


@pytest.fixture(params=["local", "s3"])
async def case(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[StoreCase]:
    settings = Settings(env="test", data_dir=tmp_path, chains=[], log_json=False)
    if request.param == "local":
        root = tmp_path / "evidence"
        store = file_store(settings)
        assert isinstance(store, LocalFileStore) and store.root == root

        async def local_stored() -> set[str]:
            return {path.relative_to(root).as_posix() for path in root.rglob("*")
                    if path.is_file() and ".incoming" not in path.parts}

        async def local_incomplete() -> list[str]:
            incoming = root / ".incoming"
            return [path.name for path in incoming.iterdir()] if incoming.exists() else []

        yield StoreCase(store, local_stored, local_incomplete)
        return

    server = request.getfixturevalue("s3_server")  # started only when an S3 case runs
    bucket = await server.new_bucket()
    store = file_store(server.settings(settings, bucket, prefix="tenant/files"))
    assert isinstance(store, S3FileStore) and store.prefix == "tenant/files/evidence/"

    async def s3_stored() -> set[str]:
        async with server.client() as client:
            listing = await client.list_objects_v2(Bucket=bucket)
        return {item["Key"].removeprefix(store.prefix) for item in listing.get("Contents", [])}

    async def s3_incomplete() -> list[str]:
        async with server.client() as client:
            uploads = await client.list_multipart_uploads(Bucket=bucket)
        return [upload["Key"] for upload in uploads.get("Uploads", [])]

    yield StoreCase(store, s3_stored, s3_incomplete)
    await store.close()


async def chunks(*parts: bytes) -> AsyncIterator[bytes]:
    for part in parts:
        yield part


async def read_all(store: FileStore, key: str) -> bytes:
    return b"".join([chunk async for chunk in store.read(key)])


def large(size: int) -> list[bytes]:
    """Random bytes in 1 MiB chunks, as an upload arrives."""
    return [os.urandom(min(MiB, size - offset)) for offset in range(0, size, MiB)]


async def test_a_saved_file_is_stored_whole_under_its_sharded_path_and_streams_back(case: StoreCase) -> None:
    stored = await case.store.save("file-1", chunks(b"abc", b"def"), max_bytes=10)
    assert (stored.key, stored.size, stored.sha256) == ("file-1", 6, hashlib.sha256(b"abcdef").hexdigest())
    assert await read_all(case.store, "file-1") == b"abcdef"
    assert await case.store.exists("file-1") and not await case.store.exists("file-2")
    assert await case.stored() == {shard_path("file-1")}
    assert await case.incomplete() == []


async def test_an_empty_file_is_a_file(case: StoreCase) -> None:
    stored = await case.store.save("empty", chunks(), max_bytes=10)
    assert stored.size == 0 and await case.store.exists("empty") and await read_all(case.store, "empty") == b""


async def test_a_file_larger_than_a_part_streams_up_and_back(case: StoreCase) -> None:
    """On S3, a multipart upload: parts go up as they fill, never the whole file at once."""
    content = large(PART_BYTES * 2 + 3 * MiB // 2)
    stored = await case.store.save("big", chunks(*content), max_bytes=PART_BYTES * 3)
    whole = b"".join(content)
    assert stored.size == len(whole) and stored.sha256 == hashlib.sha256(whole).hexdigest()
    assert await read_all(case.store, "big") == whole
    assert await case.stored() == {shard_path("big")} and await case.incomplete() == []


async def test_an_upload_over_the_limit_is_refused_and_leaves_nothing(case: StoreCase) -> None:
    with pytest.raises(PayloadTooLarge):
        await case.store.save("file-2", chunks(b"x" * 6, b"y" * 6), max_bytes=10)
    # Crossing the limit after whole parts went up: the multipart upload is aborted.
    with pytest.raises(PayloadTooLarge):
        await case.store.save("file-3", chunks(*large(PART_BYTES + 2 * MiB)), max_bytes=PART_BYTES + MiB)
    assert not await case.store.exists("file-2") and not await case.store.exists("file-3")
    assert await case.stored() == set() and await case.incomplete() == []


async def test_a_stream_that_breaks_leaves_nothing(case: StoreCase) -> None:
    async def broken() -> AsyncIterator[bytes]:
        for part in large(PART_BYTES + MiB):
            yield part
        raise ConnectionResetError("the client went away")

    with pytest.raises(ConnectionResetError):
        await case.store.save("broken", broken(), max_bytes=PART_BYTES * 2)
    assert not await case.store.exists("broken")
    assert await case.stored() == set() and await case.incomplete() == []


async def test_a_cancelled_upload_leaves_nothing(case: StoreCase) -> None:
    """The request handling an upload is cancelled (the server shuts down, the client hangs up)
    between two chunks, after more than a part went up."""
    sent_a_part, never = asyncio.Event(), asyncio.Event()

    async def stalled() -> AsyncIterator[bytes]:
        for part in large(PART_BYTES + MiB):
            yield part
        sent_a_part.set()
        await never.wait()
        yield b"never sent"

    saving = asyncio.create_task(case.store.save("stalled", stalled(), max_bytes=PART_BYTES * 2))
    await sent_a_part.wait()  # a whole part is up (S3), the rest is waiting for the next chunk
    saving.cancel()
    with pytest.raises(asyncio.CancelledError):
        await saving
    assert not await case.store.exists("stalled")
    assert await case.stored() == set() and await case.incomplete() == []


async def test_saving_a_key_again_replaces_the_file_whole(case: StoreCase) -> None:
    await case.store.save("report.csv", chunks(b"first"), max_bytes=100)
    await case.store.save("report.csv", chunks(b"second", b" version"), max_bytes=100)
    assert await read_all(case.store, "report.csv") == b"second version"
    assert await case.stored() == {shard_path("report.csv")}


async def test_discard_removes_a_file_and_a_missing_one_is_no_error(case: StoreCase) -> None:
    await case.store.save("staged", chunks(b"bytes"), max_bytes=10)
    await case.store.discard("staged")
    await case.store.discard("staged")
    await case.store.discard("never-stored")
    assert not await case.store.exists("staged") and await case.stored() == set()


async def test_reading_an_unknown_key_is_file_not_found(case: StoreCase) -> None:
    with pytest.raises(FileNotFoundError):
        await read_all(case.store, "missing")


@pytest.mark.parametrize("key", ["../x", "a/b", "/abs", "x\x00y", "", ".."])
async def test_keys_outside_the_scheme_are_refused_before_anything_is_stored(case: StoreCase, key: str) -> None:
    with pytest.raises(InvalidStorageKey):
        await case.store.save(key, chunks(b"x"), max_bytes=10)
    with pytest.raises(InvalidStorageKey):
        await case.store.exists(key)
    with pytest.raises(InvalidStorageKey):
        await read_all(case.store, key)
    assert await case.stored() == set()


def test_the_factory_picks_each_area_its_own_root(tmp_path: Path) -> None:
    local = Settings(env="test", data_dir=tmp_path, chains=[], log_json=False)
    assert file_store(local).root == tmp_path / "evidence"  # type: ignore[attr-defined]
    assert file_store(local, "reports").root == tmp_path / "reports"  # type: ignore[attr-defined]
    elsewhere = local.model_copy(update={"compliance_reports_dir": tmp_path / "archive"})
    assert file_store(elsewhere, "reports").root == tmp_path / "archive"  # type: ignore[attr-defined]
    bucket = Settings(env="test", data_dir=tmp_path, chains=[], log_json=False, file_store="s3://files")
    assert [file_store(bucket, area).prefix for area in ("evidence", "reports")] == [  # type: ignore[attr-defined]
        "evidence/", "reports/"]


def test_s3_keys_never_show_in_a_repr_or_a_settings_error(tmp_path: Path) -> None:
    secret = "wJalrXUtnFEMI-not-a-real-secret"
    settings = Settings(env="test", data_dir=tmp_path, chains=[], log_json=False, file_store="s3://files/p",
                        s3_access_key_id="AKIA-not-a-real-id", s3_secret_access_key=secret)
    shown = repr(settings) + str(settings) + repr(file_store(settings))
    assert secret not in shown and "AKIA-not-a-real-id" not in shown
    for refused in ({"file_store": f"s3://AKIA:{secret}@files/p"},
                    {"s3_endpoint_url": f"https://AKIA:{secret}@minio.internal:9000"},
                    {"s3_access_key_id": "AKIA-not-a-real-id"}):
        with pytest.raises(SettingsError) as error:
            Settings(env="test", data_dir=tmp_path, chains=[], log_json=False, **refused)
        assert secret not in str(error.value) and "AKIA-not-a-real-id" not in str(error.value)
