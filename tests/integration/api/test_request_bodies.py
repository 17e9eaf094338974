"""Request bodies are bounded: in time (total and idle), and multipart forms in parts and bytes,
whether the client declares a length or sends chunks."""

from __future__ import annotations

import asyncio
import json

import pytest
from aiohttp import web

from api.access import PUBLIC
from api.http import multipart_file
from api.registry import Routes
from api.schemas import Empty

probe = Routes(tag="test")
FILE_LIMIT = 1024
HUNG = 30.0  # a bound for a hung test (a server that never answers), not a performance limit


@probe.post("/test/form", access=PUBLIC, form=Empty, responses={200: "application/json"})
async def form_probe(request: web.Request) -> web.Response:
    async def drain(upload, fields) -> int:
        return sum([len(chunk) async for chunk in upload.chunks])

    size, fields = await multipart_file(request, drain, max_bytes=FILE_LIMIT)
    return web.json_response({"size": size, "fields": len(fields)})


@pytest.fixture
async def app_client(make_client, settings):
    timed = settings.model_copy(update={"body_idle_timeout_seconds": 0.3, "body_read_timeout_seconds": 1.0,
                                        "form_max_fields": 10})
    return await make_client(timed, extra_routes=[probe])


async def _answer(reader: asyncio.StreamReader) -> tuple[int, dict]:
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    length = next(int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
                  if line.lower().startswith(b"content-length:"))
    return status, json.loads(await reader.readexactly(length))


async def raw_request(client, request: bytes, *, then: list[bytes] = (), pace: float = 0.0) -> tuple[int, dict]:
    """Send ``request`` on a raw socket, then each of ``then`` ``pace`` seconds apart (a client's pacing,
    not a limit on the server) until the server answers, and read the answer."""
    reader, writer = await asyncio.open_connection(client.host, client.port)
    answer = asyncio.create_task(_answer(reader))
    try:
        writer.write(request)
        for piece in then:
            await asyncio.wait({answer}, timeout=pace)
            if answer.done():
                break
            writer.write(piece)
        try:
            return await asyncio.wait_for(answer, HUNG)
        except TimeoutError:
            raise AssertionError("the server kept waiting for the body") from None
    finally:
        answer.cancel()
        writer.close()


async def test_a_body_that_stops_arriving_is_408(app_client):
    request = (b"POST /api/v1/auth/login HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n"
               b"Content-Length: 100\r\n\r\n{\"email\": ")
    status, body = await raw_request(app_client, request)
    assert status == 408, body
    assert body["error"]["code"] == "request_timeout"
    assert (await app_client.get("/health")).status == 200


async def test_a_body_trickled_past_the_read_timeout_is_408(app_client):
    request = (b"POST /api/v1/auth/login HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n"
               b"Content-Length: 1000\r\n\r\n")
    # A byte every 0.1 s never trips the idle timeout; the whole body would take 100 s.
    status, body = await raw_request(app_client, request, then=[b" "] * 1000, pace=0.1)
    assert status == 408, body
    assert body["error"]["code"] == "request_timeout"


def multipart(fields: int, field_bytes: int, file_bytes: int, boundary: str = "caps") -> bytes:
    parts = [f"--{boundary}\r\nContent-Disposition: form-data; name=\"f{index}\"\r\n\r\n".encode()
             + b"x" * field_bytes + b"\r\n" for index in range(fields)]
    parts.append(f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.txt\"\r\n"
                 "Content-Type: text/plain\r\n\r\n".encode() + b"y" * file_bytes + b"\r\n")
    return b"".join(parts) + f"--{boundary}--\r\n".encode()


async def chunks(data: bytes, size: int = 4096):
    for start in range(0, len(data), size):
        yield data[start:start + size]


FORM = {"Content-Type": "multipart/form-data; boundary=caps"}


async def test_a_form_within_its_caps_is_read(app_client):
    response = await app_client.post("/api/v1/test/form", data=chunks(multipart(3, 10, 100)), headers=FORM)
    assert response.status == 200, await response.text()
    assert await response.json() == {"size": 100, "fields": 3}


async def test_a_form_with_too_many_fields_is_422(app_client):
    for send in (lambda data: data, chunks):  # with a Content-Length, and chunked
        response = await app_client.post("/api/v1/test/form", data=send(multipart(20, 1, 1)), headers=FORM)
        body = await response.json()
        assert response.status == 422, body
        assert body["error"]["code"] == "too_many_fields" and body["error"]["details"]["max_fields"] == 10


async def test_a_chunked_form_over_its_total_is_413(app_client):
    # Chunked, so no length to refuse up front, and a store that sets no limit of its own: the
    # form still carries no more than the file's limit and 64 KiB of fields and boundaries.
    response = await app_client.post("/api/v1/test/form", data=chunks(multipart(1, 10, 80_000)), headers=FORM)
    body = await response.json()
    assert response.status == 413, body
    assert body["error"]["code"] == "payload_too_large"
