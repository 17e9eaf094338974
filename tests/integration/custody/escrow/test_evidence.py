"""Dispute evidence: sniffed types, streamed limits, exact bytes back, hidden not deleted."""

from __future__ import annotations

import asyncio
import hashlib

import pytest
from aiohttp import FormData
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from api.keys import ENGINE
from core.db import create_engine
from core.storage import shard_path

PDF = b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<<>>\nendobj\ntrailer\n<<>>\n%%EOF\n"
PNG = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(64))
EXE = b"MZ\x90\x00\x03\x00\x00\x00\x04\x00\x00\x00\xff\xff" + b"\x00" * 64


@pytest.fixture
async def dispute(escrow_client, login_as, new_escrow, act):
    buyer, seller = await login_as(escrow_client), await login_as(escrow_client)
    escrow = await new_escrow(escrow_client, buyer, seller=seller, amount="10.00")
    await act(escrow_client, buyer, escrow["id"], "fund")
    await act(escrow_client, seller, escrow["id"], "dispute", {"reason": "not as described"})
    return escrow, buyer, seller


def form(content: bytes, filename: str, content_type: str, description: str | None = None) -> FormData:
    data = FormData()
    if description is not None:
        data.add_field("description", description)
    data.add_field("file", content, filename=filename, content_type=content_type)
    return data


async def upload(client, user, escrow_id, data):
    return await client.post(f"/api/v1/escrow/{escrow_id}/dispute/evidence", data=data, headers=user.headers)


async def test_upload_list_download_delete(escrow_client, dispute, settings):
    escrow, buyer, seller = dispute
    response = await upload(escrow_client, seller, escrow["id"], form(PDF, "invoice.pdf", "application/pdf", "the invoice"))
    assert response.status == 201, await response.text()
    stored = await response.json()
    assert stored["content_type"] == "application/pdf" and stored["size"] == len(PDF)
    assert stored["sha256"] == hashlib.sha256(PDF).hexdigest() and stored["description"] == "the invoice"
    assert stored["filename"] == "invoice.pdf" and stored["uploaded_by"] == str(seller.user_id)
    files = (await (await escrow_client.get(f"/api/v1/escrow/{escrow['id']}/dispute/evidence",
                                            headers=buyer.headers)).json())["items"]
    assert [item["id"] for item in files] == [stored["id"]]
    download = await escrow_client.get(f"/api/v1/escrow/{escrow['id']}/dispute/evidence/{stored['id']}",
                                       headers=buyer.headers)
    assert download.status == 200 and await download.read() == PDF
    assert download.headers["Content-Type"] == "application/pdf"
    assert download.headers["Content-Disposition"].startswith("attachment")
    assert download.headers["X-Content-Type-Options"] == "nosniff"
    # Only the uploader (or an admin) deletes; the file disappears from the list but stays on disk.
    other = await escrow_client.post(f"/api/v1/escrow/{escrow['id']}/dispute/evidence/{stored['id']}/delete",
                                     json={}, headers=buyer.headers)
    assert other.status == 403
    deleted = await escrow_client.post(f"/api/v1/escrow/{escrow['id']}/dispute/evidence/{stored['id']}/delete",
                                       json={}, headers=seller.headers)
    assert deleted.status == 200
    files = (await (await escrow_client.get(f"/api/v1/escrow/{escrow['id']}/dispute/evidence",
                                            headers=buyer.headers)).json())["items"]
    assert files == []
    assert (settings.data_dir / "evidence" / shard_path(stored["id"])).read_bytes() == PDF
    history = await (await escrow_client.get(f"/api/v1/escrow/contracts/{escrow['id']}/history",
                                             headers=buyer.headers)).json()
    assert [item["type"] for item in history["items"]][-2:] == ["escrow.evidence_added", "escrow.evidence_deleted"]


@pytest.mark.parametrize(("content", "filename", "content_type"), [
    (EXE, "invoice.pdf", "application/pdf"),   # an EXE renamed .pdf
    (PNG, "scan.pdf", "application/pdf"),      # a PNG declared as PDF
    (PNG, "scan.png", "application/pdf"),      # declared type disagrees with the bytes
    (PDF, "invoice.exe", "application/pdf"),   # the extension disagrees with the bytes
])
async def test_forged_files_are_415_and_leave_nothing(escrow_client, dispute, settings, content, filename,
                                                      content_type):
    escrow, buyer, _ = dispute
    response = await upload(escrow_client, buyer, escrow["id"], form(content, filename, content_type))
    assert response.status == 415
    assert (await response.json())["error"]["code"] == "unsupported_media_type"
    files = (await (await escrow_client.get(f"/api/v1/escrow/{escrow['id']}/dispute/evidence",
                                            headers=buyer.headers)).json())["items"]
    assert files == []
    incoming = settings.data_dir / "evidence" / ".incoming"
    assert not incoming.exists() or list(incoming.iterdir()) == []


async def test_a_path_traversal_filename_is_only_a_display_name(escrow_client, dispute, settings):
    escrow, buyer, _ = dispute
    response = await upload(escrow_client, buyer, escrow["id"], form(PNG, "../../../etc/passwd.png", "image/png"))
    assert response.status == 201
    stored = await response.json()
    assert stored["filename"] == "passwd.png"
    assert (settings.data_dir / "evidence" / shard_path(stored["id"])).exists()
    assert not (settings.data_dir.parent / "etc").exists()


async def test_an_oversized_upload_is_413_and_leaves_nothing(make_client, settings, login_as, new_escrow, act):
    limited = settings.model_copy(update={"sandbox_credit": "USD:10000.00", "evidence_max_bytes": 64 * 1024})
    client = await make_client(limited)
    buyer, seller = await login_as(client), await login_as(client)
    escrow = await new_escrow(client, buyer, seller=seller, amount="1.00")
    await act(client, buyer, escrow["id"], "fund")
    await act(client, buyer, escrow["id"], "dispute", {"reason": "big file"})
    big = b"A" * (200 * 1024)  # plain text, valid, just too large
    response = await upload(client, buyer, escrow["id"], form(big, "log.txt", "text/plain"))
    assert response.status == 413
    assert (await response.json())["error"]["code"] == "payload_too_large"

    async def chunked():
        for _ in range(100):
            yield b"B" * 1024  # no Content-Length: the limit is enforced while streaming

    data = FormData()
    data.add_field("file", chunked(), filename="stream.txt", content_type="text/plain")
    streamed = await upload(client, buyer, escrow["id"], data)
    assert streamed.status == 413
    files = (await (await client.get(f"/api/v1/escrow/{escrow['id']}/dispute/evidence", headers=buyer.headers)).json())
    assert files["items"] == []
    incoming = limited.data_dir / "evidence" / ".incoming"
    assert not incoming.exists() or list(incoming.iterdir()) == []


async def test_evidence_needs_an_open_dispute_and_a_party(escrow_client, login_as, new_escrow, act, dispute):
    buyer, seller = await login_as(escrow_client), await login_as(escrow_client)
    escrow = await new_escrow(escrow_client, buyer, seller=seller, amount="1.00")
    await act(escrow_client, buyer, escrow["id"], "fund")
    refused = await upload(escrow_client, buyer, escrow["id"], form(PDF, "a.pdf", "application/pdf"))
    assert refused.status == 409
    disputed, _, _ = dispute
    stranger = await login_as(escrow_client)
    assert (await upload(escrow_client, stranger, disputed["id"], form(PDF, "a.pdf", "application/pdf"))).status == 404


async def test_json_instead_of_a_form_is_415_and_a_form_without_file_is_422(escrow_client, dispute):
    escrow, buyer, _ = dispute
    as_json = await escrow_client.post(f"/api/v1/escrow/{escrow['id']}/dispute/evidence", json={"file": "x"},
                                       headers=buyer.headers)
    assert as_json.status == 415
    data = FormData()
    data.add_field("description", "no file")
    data.add_field("dummy", b"x", filename="", content_type="text/plain")
    no_file = await escrow_client.post(f"/api/v1/escrow/{escrow['id']}/dispute/evidence", data=form(b"", "", "")
                                       if False else FormData({"description": "only"}), headers=buyer.headers)
    assert no_file.status in (415, 422)


async def test_more_than_the_file_limit_is_409(make_client, settings, login_as, new_escrow, act):
    client = await make_client(settings.model_copy(update={"sandbox_credit": "USD:10000.00", "evidence_max_files": 2}))
    buyer, seller = await login_as(client), await login_as(client)
    escrow = await new_escrow(client, buyer, seller=seller, amount="1.00")
    await act(client, buyer, escrow["id"], "fund")
    await act(client, buyer, escrow["id"], "dispute", {"reason": "many files"})
    for n in range(2):
        assert (await upload(client, buyer, escrow["id"], form(PDF, f"{n}.pdf", "application/pdf"))).status == 201
    third = await upload(client, buyer, escrow["id"], form(PDF, "2.pdf", "application/pdf"))
    assert third.status == 409 and (await third.json())["error"]["code"] == "too_many_files"


async def test_slow_upload_does_not_hold_a_connection(escrow_client, dispute, settings, database_url):
    """While a client trickles a file, no database connection is held and the contract is not locked.

    The test paces the upload itself: the file stays half-sent until the test has looked.
    """
    escrow, buyer, _ = dispute
    boundary = "slowupload"
    head = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"notes.txt\"\r\n"
            "Content-Type: text/plain\r\n\r\n").encode()
    tail = f"\r\n--{boundary}--\r\n".encode()
    first, rest = [b"a" * 65536] * 3, b"b" * 8192
    go_on = asyncio.Event()

    async def trickle():
        yield head
        for piece in first:  # more than two reads: the multipart reader holds one back, looking for the boundary
            yield piece
        await go_on.wait()
        yield rest + tail

    headers = {**buyer.headers, "Content-Type": f"multipart/form-data; boundary={boundary}"}
    sending = asyncio.create_task(escrow_client.post(f"/api/v1/escrow/{escrow['id']}/dispute/evidence",
                                                     data=trickle(), headers=headers))
    incoming = settings.data_dir / "evidence" / ".incoming"
    for _ in range(600):  # a bound for a hung test, not a performance limit
        if incoming.exists() and list(incoming.iterdir()):
            break
        await asyncio.sleep(0.05)
    else:
        go_on.set()
        raise AssertionError(f"the upload never started streaming: {await (await sending).text()}")

    engine = escrow_client.server.app[ENGINE]
    held = engine.pool.checkedout()
    other = create_engine(database_url)
    try:
        async with other.connect() as connection, connection.begin():
            locked = await connection.execute(text("SELECT id FROM escrow_contracts WHERE id = :id FOR UPDATE NOWAIT"),
                                              {"id": escrow["id"]})
            assert locked.scalar_one()
    except DBAPIError as error:
        raise AssertionError("the contract row is locked while the client is still sending") from error
    finally:
        await other.dispose()
        go_on.set()
    response = await sending
    assert held == 0, "a database connection was held while the client was still sending"
    assert response.status == 201, await response.text()
    assert (await response.json())["size"] == sum(map(len, first)) + len(rest)


async def test_party_cannot_decide_own_dispute(escrow_client, login_as, new_escrow, act):
    """Staff who are a party to an escrow act on its dispute as a party, never as its judge."""
    buyer = await login_as(escrow_client, "admin")
    seller = await login_as(escrow_client, "compliance")
    officer, support = await login_as(escrow_client, "compliance"), await login_as(escrow_client, "support")
    escrow = await new_escrow(escrow_client, buyer, seller=seller, amount="10.00")
    await act(escrow_client, buyer, escrow["id"], "fund")
    await act(escrow_client, seller, escrow["id"], "dispute", {"reason": "not paid for extras"})

    uploaded = await upload(escrow_client, seller, escrow["id"], form(PDF, "proof.pdf", "application/pdf"))
    assert uploaded.status == 201, await uploaded.text()
    file_id = (await uploaded.json())["id"]
    # Support reads contracts but does not write to a dispute.
    refused = await upload(escrow_client, support, escrow["id"], form(PDF, "x.pdf", "application/pdf"))
    assert refused.status == 403 and (await refused.json())["error"]["code"] == "party_or_arbiter"

    for party, path, body in [(seller, "dispute/resolve", {"outcome": "release"}),
                              (buyer, "dispute/resolve", {"outcome": "refund"}),
                              (seller, "dispute/reject", {}), (buyer, "dispute/reject", {}),
                              (buyer, f"dispute/evidence/{file_id}/delete", {})]:
        payload = await act(escrow_client, party, escrow["id"], path, body, expect=403)
        assert payload["error"]["code"] == "party_to_dispute", (path, payload)
    # Nothing moved; the evidence is still listed.
    assert (await act(escrow_client, buyer, escrow["id"], "dispute", {"reason": "again"}, expect=409))
    files = (await (await escrow_client.get(f"/api/v1/escrow/{escrow['id']}/dispute/evidence",
                                            headers=officer.headers)).json())["items"]
    assert [item["id"] for item in files] == [file_id]

    # A party may still withdraw their own upload, and an impartial officer decides.
    hidden = await act(escrow_client, seller, escrow["id"], f"dispute/evidence/{file_id}/delete")
    assert hidden["id"] == file_id
    resolved = await act(escrow_client, officer, escrow["id"], "dispute/resolve", {"outcome": "refund"})
    assert resolved["state"] == "resolved"
