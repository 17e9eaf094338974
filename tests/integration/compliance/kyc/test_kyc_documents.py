"""KYC documents through the real routes: multipart submission next to JSON, sniffing, limits, the
officers' view and download, and nothing left behind by a refused submission."""

from __future__ import annotations

import hashlib
import json
import uuid
from pathlib import Path

import aiohttp
import pytest
from sqlalchemy import func, select

from compliance.kyc.models import KycDocument
from core import audit
from core.settings import Settings
from core.storage import shard_path
from tests.integration.compliance.kyc.test_kyc import application, kyc_status

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00\x00\x00\rIHDR" + b"\x00" * 200
PDF = b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<<>>\nendobj\ntrailer\n<<>>\n%%EOF\n"
EXE = b"MZ\x90\x00\x03\x00\x00\x00\x04\x00\x00\x00\xff\xff\x00\x00" + b"\x00" * 100


@pytest.fixture
def document_settings(settings: Settings) -> Settings:
    return settings.model_copy(update={"kyc_document_max_bytes": 4096, "kyc_document_max_files": 2})


@pytest.fixture
async def client(make_client, document_settings: Settings):
    from tests.integration.compliance.conftest import unmounted

    return await make_client(document_settings, extra_routes=unmounted(document_settings))


def form(files: list[tuple[str, bytes, str | None]], field: str = "documents", **changes) -> aiohttp.FormData:
    body = application(**changes)
    data = aiohttp.FormData(default_to_multipart=True)
    for name, value in body.items():
        data.add_field(name, json.dumps(value) if isinstance(value, dict) else value)
    for filename, content, content_type in files:
        data.add_field(field, content, filename=filename, content_type=content_type or "application/octet-stream")
    return data


async def submit_form(client, user, files, **changes):
    return await client.post("/api/v1/me/kyc", data=form(files, **changes), headers=user.headers)


async def stored_files(root: Path) -> set[str]:
    evidence = root / "evidence"
    return {path.name for path in evidence.rglob("*") if path.is_file()} if evidence.exists() else set()


async def document_count(factory, user_id: uuid.UUID) -> int:
    async with factory() as session:
        return await session.scalar(select(func.count()).select_from(KycDocument).where(KycDocument.user_id == user_id))


async def test_a_multipart_submission_stores_its_documents_and_officers_see_and_download_them(
        client, login_as, factory, document_settings) -> None:
    user, officer = await login_as(client), await login_as(client, "compliance")
    response = await submit_form(client, user, [("passport.png", PNG, "image/png"), ("bill.pdf", PDF, None)])
    assert response.status == 201, await response.text()
    body = await response.json()
    assert body["state"] == "pending"
    assert [(d["filename"], d["content_type"], d["size"]) for d in body["documents"]] == [
        ("passport.png", "image/png", len(PNG)), ("bill.pdf", "application/pdf", len(PDF))]
    assert await kyc_status(client, user) == "pending"

    # The bytes are in the evidence store under the document's id (a sharded path), hashed.
    for document, content in zip(body["documents"], (PNG, PDF), strict=True):
        path = document_settings.data_dir / "evidence" / shard_path(document["id"])
        assert path.read_bytes() == content and document["sha256"] == hashlib.sha256(content).hexdigest()

    queue = await (await client.get("/api/v1/admin/kyc/queue?limit=500", headers=officer.headers)).json()
    (item,) = [item for item in queue["items"] if item["user_id"] == str(user.user_id)]
    assert [d["id"] for d in item["documents"]] == [d["id"] for d in body["documents"]]
    assert set(item["documents"][0]) == {"id", "filename", "content_type", "size", "sha256", "submitted_at",
                                         "created_at"}  # metadata only
    case = await client.get(f"/api/v1/admin/kyc/{user.user_id}", headers=officer.headers)
    assert case.status == 200
    assert [d["sha256"] for d in (await case.json())["documents"]] == [d["sha256"] for d in body["documents"]]

    png = body["documents"][0]
    download = await client.get(f"/api/v1/admin/kyc/{user.user_id}/documents/{png['id']}", headers=officer.headers)
    assert download.status == 200
    assert await download.read() == PNG
    assert download.headers["Content-Type"] == "image/png"
    assert download.headers["X-Content-Type-Options"] == "nosniff"
    assert download.headers["Content-Disposition"].startswith("attachment")
    assert download.headers["X-Content-SHA256"] == png["sha256"]

    async with factory() as session:
        (submitted,) = await audit.events_of(session, "kyc_case", user.user_id)
    assert [d["sha256"] for d in submitted.data["documents"]] == [d["sha256"] for d in body["documents"]]


async def test_json_submissions_work_as_before_with_no_documents(client, login_as) -> None:
    user, officer = await login_as(client), await login_as(client, "admin")
    response = await client.post("/api/v1/me/kyc", json=application(), headers=user.headers)
    assert response.status == 201, await response.text()
    assert (await response.json())["documents"] == []
    decided = await client.post(f"/api/v1/admin/kyc/{user.user_id}/decision",
                                json={"decision": "approved", "reason": "ok"}, headers=officer.headers)
    assert decided.status == 200 and (await decided.json())["documents"] == []
    # A form without files is a submission too.
    other = await login_as(client)
    assert (await submit_form(client, other, [])).status == 201


async def test_documents_accumulate_over_a_resubmission(client, login_as, factory) -> None:
    user, officer = await login_as(client), await login_as(client, "compliance")
    assert (await submit_form(client, user, [("id.png", PNG, "image/png")])).status == 201
    asked = await client.post(f"/api/v1/admin/kyc/{user.user_id}/decision",
                              json={"decision": "needs_info", "reason": "proof of address"}, headers=officer.headers)
    assert asked.status == 200
    assert (await submit_form(client, user, [("address.pdf", PDF, "application/pdf")])).status == 201
    case = await (await client.get(f"/api/v1/admin/kyc/{user.user_id}", headers=officer.headers)).json()
    assert [d["filename"] for d in case["documents"]] == ["id.png", "address.pdf"]
    assert case["documents"][0]["submitted_at"] < case["documents"][1]["submitted_at"]


@pytest.mark.parametrize(("filename", "content", "declared"), [
    ("setup.exe", EXE, None),  # not an accepted type at all
    ("passport.pdf", EXE, "application/pdf"),  # an executable renamed and declared as a PDF
    ("passport.png", PNG, "application/pdf"),  # a PNG declared as a PDF
    ("passport.pdf", PNG, "image/png"),  # a PNG named .pdf
], ids=["exe", "exe-as-pdf", "png-declared-pdf", "png-named-pdf"])
async def test_unknown_or_mismatched_types_are_refused_and_nothing_is_kept(
        client, login_as, factory, document_settings, filename, content, declared) -> None:
    user = await login_as(client)
    before = await stored_files(document_settings.data_dir)
    response = await submit_form(client, user, [("ok.png", PNG, "image/png"), (filename, content, declared)])
    assert response.status == 415, await response.text()
    assert (await response.json())["error"]["code"] == "unsupported_media_type"
    assert await kyc_status(client, user) == "unverified"
    assert await document_count(factory, user.user_id) == 0
    assert await stored_files(document_settings.data_dir) == before  # the first file was discarded too


async def test_size_and_count_limits(client, login_as, factory, document_settings) -> None:
    user = await login_as(client)
    before = await stored_files(document_settings.data_dir)
    big = await submit_form(client, user, [("big.png", PNG + b"\x00" * 5000, "image/png")])
    assert big.status == 413 and (await big.json())["error"]["code"] == "payload_too_large"
    many = await submit_form(client, user, [(f"{n}.png", PNG, "image/png") for n in range(3)])
    assert many.status == 422
    error = (await many.json())["error"]
    assert (error["code"], error["details"]) == ("too_many_files", {"max_files": 2})
    assert await document_count(factory, user.user_id) == 0
    assert await stored_files(document_settings.data_dir) == before
    assert await kyc_status(client, user) == "unverified"


async def test_form_refusals_name_the_field(client, login_as, factory) -> None:
    user = await login_as(client)
    bad_address = form([("id.png", PNG, "image/png")])
    bad_address._fields = [f for f in bad_address._fields if f[0]["name"] != "address"]
    bad_address.add_field("address", "{not json")
    response = await client.post("/api/v1/me/kyc", data=bad_address, headers=user.headers)
    assert response.status == 422
    assert [f["field"] for f in (await response.json())["error"]["details"]["fields"]] == ["address"]

    response = await submit_form(client, user, [("id.png", PNG, "image/png")], country="Canada")
    assert response.status == 422
    assert [f["field"] for f in (await response.json())["error"]["details"]["fields"]] == ["country"]

    wrong_field = await client.post("/api/v1/me/kyc", data=form([("id.png", PNG, "image/png")], field="file"),
                                    headers=user.headers)
    assert wrong_field.status == 422 and (await wrong_field.json())["error"]["code"] == "unexpected_file"
    assert await document_count(factory, user.user_id) == 0


async def test_only_officers_download_and_only_the_cases_own_documents(client, login_as) -> None:
    user, other = await login_as(client), await login_as(client)
    body = await (await submit_form(client, user, [("id.png", PNG, "image/png")])).json()
    document = body["documents"][0]["id"]
    url = f"/api/v1/admin/kyc/{user.user_id}/documents/{document}"
    for role in ((), ("support",), ("operator",)):
        caller = user if not role else await login_as(client, *role)
        response = await client.get(url, headers=caller.headers)
        assert response.status == 403, role
    client.session.cookie_jar.clear()  # login_as left a session cookie behind
    assert (await client.get(url)).status == 401
    admin = await login_as(client, "admin")
    assert (await client.get(url, headers=admin.headers)).status == 200
    # Another case's id, an unknown id and a malformed id are all 404.
    for path in (f"/api/v1/admin/kyc/{other.user_id}/documents/{document}",
                 f"/api/v1/admin/kyc/{user.user_id}/documents/{uuid.uuid4()}",
                 f"/api/v1/admin/kyc/{user.user_id}/documents/not-a-uuid"):
        response = await client.get(path, headers=admin.headers)
        assert response.status == 404 and (await response.json())["error"]["code"] == "kyc_document_not_found"
    missing = await client.get(f"/api/v1/admin/kyc/{uuid.uuid4()}", headers=admin.headers)
    assert missing.status == 404 and (await missing.json())["error"]["code"] == "kyc_case_not_found"
