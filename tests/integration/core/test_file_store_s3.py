"""VIRTUOZ_FILE_STORE=s3://…: the real routes and the real compliance worker against a real S3 server
(moto_server). What one API replica or the worker stores, another replica serves; nothing is written
to the local data directory."""

from __future__ import annotations

import hashlib
import random
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from aiohttp import FormData
from dramatiq.brokers.redis import RedisBroker

from core.settings import Settings
from core.storage import shard_path
from jobs.broker import DEFAULT_NAMESPACE, close_broker, create_broker
from tests.factories import make_escrow
from tests.integration.compliance.conftest import drain, unmounted
from tests.integration.compliance.kyc.test_kyc_documents import PDF, PNG, submit_form
from tests.s3_server import S3Server

MiB = 1024 * 1024


@pytest.fixture
async def s3_settings(settings: Settings, s3_server: S3Server, s3_bucket: str) -> Settings:
    return s3_server.settings(settings.model_copy(update={"sandbox_credit": "USD:10000.00"}), s3_bucket)


@pytest.fixture
async def replicas(make_client, s3_settings: Settings, tmp_path_factory: pytest.TempPathFactory):
    """Two API processes' apps sharing the bucket and nothing else: each its own data directory."""
    first = await make_client(s3_settings, extra_routes=unmounted(s3_settings))
    other = s3_settings.model_copy(update={"data_dir": tmp_path_factory.mktemp("replica")})
    return first, await make_client(other, extra_routes=unmounted(other))


@pytest.fixture
def app_broker(redis_url: str, database_url: str) -> Iterator[RedisBroker]:
    """The worker's side of the namespace the app sends to."""
    broker = create_broker(redis_url, database_url=database_url, database_pool_size=2, namespace=DEFAULT_NAMESPACE)
    yield broker
    close_broker(broker)


async def objects(s3_server: S3Server, bucket: str) -> dict[str, bytes]:
    found = await s3_server.objects(bucket)
    async with s3_server.client() as client:
        uploads = await client.list_multipart_uploads(Bucket=bucket)
    assert uploads.get("Uploads", []) == [], "an upload was left open"
    return found


def nothing_local(settings: Settings) -> bool:
    return not any(Path(settings.data_dir, area).exists() for area in ("evidence", "reports"))


def evidence_form(content: bytes, filename: str, content_type: str) -> FormData:
    data = FormData()
    data.add_field("file", content, filename=filename, content_type=content_type)
    return data


async def test_evidence_uploaded_to_one_replica_downloads_from_another(replicas, login_as, s3_settings, s3_server,
                                                                       s3_bucket) -> None:
    uploader, reader = replicas
    buyer, seller = await login_as(uploader), await login_as(uploader)
    escrow = await make_escrow(uploader, buyer, seller=seller, amount="10.00")
    for action, body in (("fund", {}), ("dispute", {"reason": "not as described"})):
        response = await uploader.post(f"/api/v1/escrow/{escrow['id']}/{action}", json=body, headers=buyer.headers)
        assert response.status == 200, await response.text()
    evidence = f"/api/v1/escrow/{escrow['id']}/dispute/evidence"

    small = await uploader.post(evidence, data=evidence_form(PDF, "invoice.pdf", "application/pdf"),
                                headers=seller.headers)
    assert small.status == 201, await small.text()
    # Larger than a part: a multipart upload, streamed from the request into the bucket.
    log = b"2026-12-01 deliveries\n" * (9 * MiB // 22)
    big = await uploader.post(evidence, data=evidence_form(log, "deliveries.txt", "text/plain"), headers=buyer.headers)
    assert big.status == 201, await big.text()
    stored = [await small.json(), await big.json()]

    for item, content in zip(stored, (PDF, log), strict=True):
        assert item["sha256"] == hashlib.sha256(content).hexdigest()
        download = await reader.get(f"{evidence}/{item['id']}", headers=seller.headers)
        assert download.status == 200 and await download.read() == content
        assert download.headers["Content-Disposition"].startswith("attachment")
    assert await objects(s3_server, s3_bucket) == {
        f"virtuoz/evidence/{shard_path(stored[0]['id'])}": PDF, f"virtuoz/evidence/{shard_path(stored[1]['id'])}": log}

    # Over the limit, after a part went up: 413, and the bucket holds no trace of it.
    too_big = await uploader.post(evidence, data=evidence_form(b"B" * (s3_settings.evidence_max_bytes + MiB),
                                                               "dump.txt", "text/plain"), headers=buyer.headers)
    assert too_big.status == 413
    assert len(await objects(s3_server, s3_bucket)) == 2
    assert nothing_local(s3_settings)


async def test_kyc_documents_go_to_the_bucket_and_officers_download_them(replicas, login_as, s3_settings,
                                                                         s3_server, s3_bucket) -> None:
    submitter, reviewer = replicas
    user, officer = await login_as(submitter), await login_as(reviewer, "compliance")
    response = await submit_form(submitter, user, [("passport.png", PNG, "image/png"), ("bill.pdf", PDF, None)])
    assert response.status == 201, await response.text()
    documents = (await response.json())["documents"]
    for document, content in zip(documents, (PNG, PDF), strict=True):
        download = await reviewer.get(f"/api/v1/admin/kyc/{user.user_id}/documents/{document['id']}",
                                      headers=officer.headers)
        assert download.status == 200 and await download.read() == content
    assert sorted(await objects(s3_server, s3_bucket)) == sorted(
        f"virtuoz/evidence/{shard_path(document['id'])}" for document in documents)
    assert nothing_local(s3_settings)


async def test_a_report_the_worker_writes_is_served_by_the_api(replicas, login_as, app_broker, s3_settings,
                                                               s3_server, s3_bucket, tmp_path_factory) -> None:
    api, _ = replicas
    officer = await login_as(api, "compliance")
    start = datetime(2001, 1, 1, tzinfo=UTC) + timedelta(days=random.randrange(0, 9 * 365))
    response = await api.post("/api/v1/compliance/reports", headers=officer.headers, json={
        "jurisdiction": "US", "type": "suspicious_activity", "period_start": start.isoformat(),
        "period_end": (start + timedelta(days=1)).isoformat()})
    assert response.status == 202, await response.text()
    report_id = (await response.json())["id"]
    # The compliance worker: another process, with a data directory of its own.
    worker_settings = s3_settings.model_copy(update={"data_dir": tmp_path_factory.mktemp("worker")})
    await drain(app_broker, worker_settings)

    listing = await (await api.get("/api/v1/compliance/reports/US", headers=officer.headers)).json()
    (item,) = [item for item in listing["items"] if item["id"] == report_id]
    assert item["state"] == "ready", item
    stored = await objects(s3_server, s3_bucket)
    for format, digest in (("csv", item["sha256"]), ("json", item["json_sha256"])):
        download = await api.get(f"/api/v1/compliance/reports/US/{report_id}/download?format={format}",
                                 headers=officer.headers)
        assert download.status == 200
        content = await download.read()
        assert hashlib.sha256(content).hexdigest() == digest == download.headers["X-Content-SHA256"]
        assert stored[f"virtuoz/reports/{shard_path(f'{report_id}.{format}')}"] == content
    assert content.startswith(b"{") and report_id.encode() in content
    assert nothing_local(s3_settings) and nothing_local(worker_settings)
