"""/readiness and /status in public: names and states only, the detail in the log with URLs
redacted, and one probe of each dependency per cache period however hard the routes are hit.

The chain is a real Anvil behind a loopback "provider" that counts the calls and carries its
API key in the URL path, as hosted RPC providers do.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass

import aiohttp
import pytest
from aiohttp import web

from core.settings import ChainSettings
from tests.chain_fixtures import TEST_CHAIN_ID, anvil_chain  # noqa: F401

PROVIDER_KEY = "provider-key-0123456789abcdef"


@dataclass
class Provider:
    url: str
    calls: int = 0
    failing: bool = False


@pytest.fixture
async def provider(anvil_chain) -> AsyncIterator[Provider]:  # noqa: F811
    state = Provider(url="")

    async def forward(request: web.Request) -> web.Response:
        state.calls += 1
        if state.failing:  # as providers do: the error page repeats the URL, key included
            return web.Response(status=502, text=f"upstream error for {request.url}")
        async with aiohttp.ClientSession() as session, \
                session.post(anvil_chain.rpc_url, data=await request.read(),
                             headers={"Content-Type": "application/json"}) as answer:
            return web.Response(body=await answer.read(), content_type="application/json")

    app = web.Application()
    app.router.add_post("/v3/{key}", forward)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    state.url = f"http://127.0.0.1:{port}/v3/{PROVIDER_KEY}"
    yield state
    await runner.cleanup()


@pytest.fixture
async def chain_client(make_client, settings, provider):
    chain = ChainSettings(name="ethereum", chain_id=TEST_CHAIN_ID, rpc_url=provider.url, native="ETH")
    readiness = settings.readiness.model_copy(update={"chains": True})
    return await make_client(settings.model_copy(update={"chains": [chain], "readiness": readiness,
                                                         "probe_cache_seconds": 3600.0}))


async def test_readiness_shows_names_and_states_only(chain_client, provider, caplog):
    provider.failing = True
    caplog.set_level(logging.INFO)
    response = await chain_client.get("/readiness")
    text = await response.text()
    body = await response.json()
    assert response.status == 503
    assert body["failing"] == ["chain:ethereum"]
    assert all(set(check) == {"name", "ok"} for check in body["checks"]), body
    assert PROVIDER_KEY not in text and "127.0.0.1" not in text
    logged = "\n".join(record.getMessage() for record in caplog.records if record.name == "api.probes")
    assert "chain:ethereum" in logged and "502" in logged  # the detail is in the log...
    ours = [record.getMessage() for record in caplog.records if record.name != "aiohttp.access"]  # not the provider's
    assert not [line for line in ours if PROVIDER_KEY in line]  # ...with the provider key redacted


async def test_status_says_nothing_of_the_rpc_url(chain_client, provider):
    text = await (await chain_client.get("/api/v1/status")).text()
    assert PROVIDER_KEY not in text and "/v3/" not in text


async def test_probes_are_cached(chain_client, provider):
    first = await chain_client.get("/readiness")
    assert first.status == 200, await first.text()
    calls = provider.calls
    assert calls >= 1
    answers = await asyncio.gather(*(chain_client.get("/readiness") for _ in range(30)))
    answers += [await chain_client.get("/readiness") for _ in range(10)]
    assert {answer.status for answer in answers} == {200}
    assert provider.calls == calls  # forty requests, no new RPC call
    await asyncio.gather(*(chain_client.get("/api/v1/status") for _ in range(20)))
    after_status = provider.calls
    await asyncio.gather(*(chain_client.get("/api/v1/status") for _ in range(20)))
    assert provider.calls == after_status
