"""The TRP listener has the API's guards, over real mutual TLS: hardening headers on every answer
(never cached), a body over its cap refused 413 and a body that stops arriving cut off 408, each as
the JSON error body.

The listener is the ``virtuoz trp`` app for identity ``beta``; requests come from ``alpha``'s
certificate, both signed by a CA made for the test.
"""

from __future__ import annotations

import asyncio
import json
import ssl
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from compliance.travel_rule import trp
from compliance.travel_rule.server import MAX_BODY_BYTES, create_trp_app
from compliance.travel_rule.tls import client_context, ensure_devnet_pki, identity_files, server_context
from core.settings import Settings, VaspIdentity
from devnet.processes import free_port

HUNG = 10.0  # seconds: far beyond the idle timeout the 408 test sets; reaching it means no 408 came


@dataclass
class Listener:
    host: str
    port: int
    context: ssl.SSLContext

    @property
    def url(self) -> str:
        return f"https://{self.host}:{self.port}"

    async def request(self, method: str, path: str, data: bytes | None = None,
                      headers: dict[str, str] | None = None) -> tuple[aiohttp.ClientResponse, Any]:
        async with aiohttp.ClientSession() as http:
            async with http.request(method, f"{self.url}{path}", data=data, headers=headers,
                                    ssl=self.context) as response:
                return response, json.loads(await response.text())


Start = Callable[..., Awaitable[Listener]]


@pytest.fixture
async def listen(settings: Settings, factory, tmp_path) -> AsyncIterator[Start]:
    """Start identity ``beta``'s listener, with ``overrides`` of the settings."""
    pki = tmp_path / "pki"
    ensure_devnet_pki(pki, ["alpha", "beta"], ["127.0.0.1"])
    runners: list[web.AppRunner] = []

    async def start(**overrides: Any) -> Listener:
        identity = VaspIdentity(name="beta", legal_name="Beta VASP", port=free_port())
        configured = settings.model_copy(update={"travel_rule_identities": [identity], "travel_rule_identity": "beta",
                                                 "travel_rule_pki_dir": pki, **overrides})
        runner = web.AppRunner(create_trp_app(configured, identity, factory))
        await runner.setup()
        runners.append(runner)
        await web.TCPSite(runner, identity.host, identity.port,
                          ssl_context=server_context(identity_files(pki, "beta"))).start()
        return Listener(identity.host, identity.port, client_context(identity_files(pki, "alpha")))

    yield start
    for runner in runners:
        await runner.cleanup()


def assert_hardened(response: aiohttp.ClientResponse) -> None:
    headers = response.headers
    assert headers["X-Content-Type-Options"] == "nosniff", (response.url, dict(headers))
    assert headers["Cache-Control"] == "no-store", (response.url, dict(headers))
    assert "frame-ancestors 'none'" in headers["Content-Security-Policy"], response.url
    assert headers["Referrer-Policy"] == "no-referrer", response.url


async def test_every_answer_is_hardened_and_never_cached(listen) -> None:
    beta = await listen()
    response, answer = await beta.request("GET", "/identity")
    assert response.status == 200 and answer["name"] == "Beta VASP"
    assert_hardened(response)
    refusals = [
        (("POST", "/inquiry/0xabc", b"{}", {**trp.headers(str(uuid.uuid4())), "api-version": "1.0.0"}),
         (422, "trp_version")),
        (("GET", "/no/such/path", None, None), (404, "not_found")),
        (("GET", "/inquiry/0xabc", None, None), (405, "method_not_allowed")),
    ]
    for (method, path, data, headers), expected in refusals:
        response, answer = await beta.request(method, path, data, headers)
        assert (response.status, answer["error"]["code"]) == expected, answer
        assert response.content_type == trp.JSON
        assert_hardened(response)
    assert response.headers["Allow"] == "POST"  # the 405 names what the path takes


async def test_a_body_over_the_cap_is_413_as_json(listen) -> None:
    beta = await listen()
    oversize = b'{"padding": "' + b"x" * MAX_BODY_BYTES + b'"}'
    response, answer = await beta.request("POST", "/inquiry/0xabc", oversize, trp.headers(str(uuid.uuid4())))
    assert response.status == 413, answer
    assert answer["error"]["code"] == "payload_too_large"
    assert answer["error"]["details"] == {"max_bytes": MAX_BODY_BYTES}
    assert_hardened(response)
    # The API's cap holds here too when it is the smaller one.
    tight = await listen(max_body_bytes=4096)
    response, answer = await tight.request("POST", "/inquiry/0xabc", b'{"padding": "' + b"x" * 8192 + b'"}',
                                           trp.headers(str(uuid.uuid4())))
    assert (response.status, answer["error"]["details"]) == (413, {"max_bytes": 4096}), answer


async def test_a_body_that_stops_arriving_is_408_as_json(listen) -> None:
    beta = await listen(body_idle_timeout_seconds=0.3)
    reader, writer = await asyncio.open_connection(beta.host, beta.port, ssl=beta.context)
    try:
        identifier = str(uuid.uuid4())
        writer.write(f"POST /inquiry/0xabc HTTP/1.1\r\nHost: {beta.host}\r\nContent-Type: {trp.JSON}\r\n"
                     f"api-version: {trp.API_VERSION}\r\nrequest-identifier: {identifier}\r\n"
                     "Content-Length: 100\r\n\r\n{\"asset\": ".encode())
        await writer.drain()
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), HUNG)
        lines = head.decode().split("\r\n")
        headers = {name.lower(): value for name, _, value in (line.partition(": ") for line in lines[1:] if line)}
        answer = json.loads(await asyncio.wait_for(reader.readexactly(int(headers["content-length"])), HUNG))
    finally:
        writer.close()
    assert int(lines[0].split(" ", 2)[1]) == 408, answer
    assert answer["error"]["code"] == "request_timeout"
    assert headers["x-content-type-options"] == "nosniff" and headers["cache-control"] == "no-store"
    response, _ = await beta.request("GET", "/identity")  # the listener goes on serving
    assert response.status == 200
