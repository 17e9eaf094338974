"""Every failure leaves as the JSON error body, with a stable code and the request id."""

from __future__ import annotations

import json
import uuid

import pytest
from aiohttp import web
from pydantic import BaseModel, Field
from sqlalchemy import select

from api.middleware import db_session
from api.access import PUBLIC
from api.registry import Routes
from core.db import after_commit, create_engine, session_factory
from core.errors import Conflict
from core.heartbeats import ServiceHeartbeat, record_heartbeat

probe = Routes(tag="test")
after_commit_calls: list[str] = []


class Echo(BaseModel):
    name: str = Field(min_length=1, max_length=50)
    amount: str


@probe.post("/test/echo", access=PUBLIC, body=Echo, responses={200: Echo})
async def echo(request: web.Request, body: Echo) -> Echo:
    return body


@probe.post("/test/write", access=PUBLIC, body=Echo, responses={200: Echo})
async def write(request: web.Request, body: Echo) -> Echo:
    """Writes a row and buffers an after-commit call; fails with a conflict when asked to."""
    session = db_session(request)
    await record_heartbeat(session, body.name)
    after_commit(session, after_commit_calls.append, body.name)
    if body.amount == "fail":
        raise Conflict("asked to fail", code="asked_to_fail")
    if body.amount == "crash":
        raise RuntimeError("secret internals that must not leak")
    return body


@pytest.fixture
async def app_client(make_client, settings):
    return await make_client(settings, extra_routes=[probe])


def assert_error(body: dict, code: str, request_id: str | None = None) -> None:
    assert set(body) == {"error"}
    assert set(body["error"]) == {"code", "message", "details", "request_id"}
    assert body["error"]["code"] == code
    assert body["error"]["message"]
    if request_id:
        assert body["error"]["request_id"] == request_id


async def test_malformed_json_is_400(app_client):
    response = await app_client.post("/api/v1/test/echo", data=b'{"name": ', headers={"Content-Type": "application/json"})
    assert response.status == 400
    assert_error(await response.json(), "malformed_json", response.headers["X-Request-ID"])


async def test_nan_is_not_json(app_client):
    response = await app_client.post(
        "/api/v1/test/echo", data=b'{"name": "a", "amount": NaN}', headers={"Content-Type": "application/json"}
    )
    assert response.status == 400
    assert_error(await response.json(), "malformed_json")


async def test_wrong_content_type_is_415(app_client):
    response = await app_client.post("/api/v1/test/echo", data=b"name=a", headers={"Content-Type": "text/plain"})
    assert response.status == 415
    assert_error(await response.json(), "unsupported_media_type")


async def test_body_over_the_limit_is_413(make_client, settings):
    client = await make_client(settings.model_copy(update={"max_body_bytes": 2048}), extra_routes=[probe])
    payload = json.dumps({"name": "a", "amount": "x" * 4096})
    response = await client.post("/api/v1/test/echo", data=payload, headers={"Content-Type": "application/json"})
    assert response.status == 413
    body = await response.json()
    assert_error(body, "payload_too_large")
    assert body["error"]["details"]["max_bytes"] == 2048


async def test_invalid_fields_are_422_naming_each(app_client):
    response = await app_client.post("/api/v1/test/echo", json={"name": "", "amount": 5})
    assert response.status == 422
    body = await response.json()
    assert_error(body, "validation_error")
    fields = {item["field"] for item in body["error"]["details"]["fields"]}
    assert fields == {"name", "amount"}


async def test_valid_body_round_trips(app_client):
    response = await app_client.post("/api/v1/test/echo", json={"name": "a", "amount": "8000.00"})
    assert response.status == 200
    assert await response.json() == {"name": "a", "amount": "8000.00"}


@pytest.mark.parametrize("path", ["/nope", "/api/v1/nope", "/api/v2/status", "/api/v1/status/extra"])
async def test_unknown_route_is_json_404(app_client, path):
    response = await app_client.get(path)
    assert response.status == 404
    assert response.content_type == "application/json"
    assert_error(await response.json(), "not_found")


async def test_wrong_method_is_json_405_with_allow(app_client):
    response = await app_client.post("/health")
    assert response.status == 405
    assert "GET" in response.headers["Allow"]
    body = await response.json()
    assert_error(body, "method_not_allowed")
    assert "GET" in body["error"]["details"]["allowed"]


async def test_unexpected_exception_is_500_without_internals(app_client):
    name = f"crash-{uuid.uuid4()}"
    response = await app_client.post("/api/v1/test/write", json={"name": name, "amount": "crash"})
    assert response.status == 500
    text = await response.text()
    assert "secret internals" not in text and "Traceback" not in text
    assert_error(json.loads(text), "internal_error", response.headers["X-Request-ID"])


async def test_request_id_is_echoed_or_made(app_client):
    response = await app_client.get("/health", headers={"X-Request-ID": "abc-123"})
    assert response.headers["X-Request-ID"] == "abc-123"
    response = await app_client.get("/health", headers={"X-Request-ID": "bad id\twith spaces"})
    assert uuid.UUID(response.headers["X-Request-ID"])


async def test_failed_request_commits_nothing_and_sends_nothing(app_client, database_url):
    engine = create_engine(database_url)
    names = {outcome: f"{outcome}-{uuid.uuid4()}" for outcome in ("ok", "fail", "crash")}
    for outcome, name in names.items():
        await app_client.post("/api/v1/test/write", json={"name": name, "amount": outcome})
    async with session_factory(engine)() as session:
        stored = set(await session.scalars(select(ServiceHeartbeat.service).where(
            ServiceHeartbeat.service.in_(names.values()))))
    await engine.dispose()
    assert stored == {names["ok"]}
    assert names["ok"] in after_commit_calls
    assert names["fail"] not in after_commit_calls and names["crash"] not in after_commit_calls


async def test_cors_allows_only_listed_origins(make_client, settings):
    client = await make_client(settings.model_copy(update={"cors_origins": ["https://app.example"]}))
    preflight = await client.options(
        "/api/v1/status", headers={"Origin": "https://app.example", "Access-Control-Request-Method": "GET"}
    )
    assert preflight.status == 204
    assert preflight.headers["Access-Control-Allow-Origin"] == "https://app.example"
    allowed = await client.get("/health", headers={"Origin": "https://app.example"})
    assert allowed.headers["Access-Control-Allow-Origin"] == "https://app.example"
    other = await client.get("/health", headers={"Origin": "https://evil.example"})
    assert "Access-Control-Allow-Origin" not in other.headers
    refused = await client.options(
        "/api/v1/status", headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "GET"}
    )
    assert refused.status == 405 and "Access-Control-Allow-Origin" not in refused.headers
