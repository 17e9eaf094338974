"""Signed operator reloads: readiness policy and locale bundles, on every API process, once each."""

from __future__ import annotations

import copy
from collections.abc import AsyncIterator
from datetime import timedelta

import pytest
from redis.asyncio import Redis

from api.keys import LIVE
from core import control
from core.signing import generate_keypair, sign_payload
from core.time import utcnow
from tests.integration.identity.conftest import API, audit_events, error_code, poll

FAILING_POLICY = {"database": True, "redis": True, "chains": False, "workers": ["nonexistent-worker"],
                  "timeout_seconds": 2.0, "heartbeat_max_age_seconds": 30.0}


@pytest.fixture
async def restore_live_config(redis_url: str) -> AsyncIterator[None]:
    """Readiness policy and locale bundles live in Redis for every app of this worker: drop them after."""
    yield
    redis = Redis.from_url(redis_url)
    try:
        await redis.delete(control.READINESS_KEY, control.I18N_KEY)
        await control.publish(redis, "readiness_policy")
    finally:
        await redis.aclose()


@pytest.fixture
def operator_key():
    private, public = generate_keypair()
    return private, public


@pytest.fixture
async def apps(make_client, settings, operator_key, restore_live_config):
    """Two API processes on the same database and Redis, trusting the operator key "ops"."""
    configured = settings.model_copy(update={"operator_public_keys": {"ops": operator_key[1]}})
    return await make_client(configured), await make_client(configured)


async def readiness(client) -> tuple[int, dict]:
    response = await client.get("/readiness")
    return response.status, await response.json()


async def test_signed_readiness_policy_reaches_every_api_process(apps, operator_key, database_url, caplog):
    app_a, app_b = apps
    for client in apps:
        assert (await readiness(client))[0] == 200
    envelope = sign_payload(operator_key[0], "ops", {"policy": FAILING_POLICY})
    response = await app_a.post(f"{API}/auth/readiness-policy/reload", json=envelope)
    body = await response.json()
    assert response.status == 200, body
    assert body == {"applied": True, "key_id": "ops", "nonce": envelope["payload"]["nonce"]}

    for client in apps:
        async def not_ready(client=client):
            status, report = await readiness(client)
            return status == 503 and report["failing"] == ["workers"] and report

        report = await poll(not_ready)
        assert report, "the new policy did not reach this process"
        assert {"name": "workers", "ok": False} in report["checks"]
    assert "no recent heartbeat from nonexistent-worker" in caplog.text  # the why is in the log only

    events = [event for event in await audit_events(database_url, "operator_config", "readiness_policy")
              if event["data"].get("nonce") == envelope["payload"]["nonce"]]
    assert len(events) == 1
    assert events[0]["type"] == "readiness_policy.reloaded"
    assert events[0]["actor"] == "operator-key:ops"
    assert events[0]["data"]["policy"]["workers"] == ["nonexistent-worker"]

    # back to the test default, signed like any other change
    restore = sign_payload(operator_key[0], "ops", {"policy": {"workers": [], "chains": False}})
    assert (await app_b.post(f"{API}/auth/readiness-policy/reload", json=restore)).status == 200
    for client in apps:
        async def ready(client=client):
            return (await readiness(client))[0] == 200

        assert await poll(ready)


async def test_a_signed_envelope_works_once(apps, operator_key):
    app_a, app_b = apps
    envelope = sign_payload(operator_key[0], "ops", {"policy": {"workers": [], "chains": False}})
    assert (await app_a.post(f"{API}/auth/readiness-policy/reload", json=envelope)).status == 200
    for client in (app_a, app_b):  # replayed on the same or another process
        response = await client.post(f"{API}/auth/readiness-policy/reload", json=envelope)
        assert response.status == 403
        assert await error_code(response) == "signed_payload_replayed"


async def test_refused_envelopes(apps, operator_key):
    app_a, _ = apps
    url = f"{API}/auth/readiness-policy/reload"
    envelope = sign_payload(operator_key[0], "ops", {"policy": FAILING_POLICY})

    tampered = copy.deepcopy(envelope)
    tampered["payload"]["policy"]["workers"] = []
    response = await app_a.post(url, json=tampered)
    assert response.status == 401 and await error_code(response) == "invalid_signature"

    other_private, _ = generate_keypair()
    response = await app_a.post(url, json=sign_payload(other_private, "ops", {"policy": FAILING_POLICY}))
    assert response.status == 401 and await error_code(response) == "invalid_signature"

    expired = sign_payload(operator_key[0], "ops", {"policy": FAILING_POLICY}, now=utcnow() - timedelta(hours=1))
    response = await app_a.post(url, json=expired)
    assert response.status == 401 and await error_code(response) == "signed_payload_expired"

    response = await app_a.post(url, json=sign_payload(operator_key[0], "someone", {"policy": FAILING_POLICY}))
    assert response.status == 401 and await error_code(response) == "unknown_operator_key"

    for payload in ({"bundles": {"en": {"hello": "Hello"}}}, {"policy": {"workers": "custody"}},
                    {"policy": {"timeout_seconds": 0}}, {}):
        response = await app_a.post(url, json=sign_payload(operator_key[0], "ops", payload))
        assert response.status == 422, payload
    response = await app_a.post(url, json={**envelope, "extra": 1})
    assert response.status == 422
    response = await app_a.post(url, json={})
    assert response.status == 422

    # none of them changed anything, and the refused wrong-shape envelopes did not burn the good one
    assert (await readiness(app_a))[0] == 200
    response = await app_a.post(url, json=sign_payload(operator_key[0], "ops", {"policy": {"workers": [], "chains": False}}))
    assert response.status == 200


async def test_a_wrong_shape_does_not_consume_the_nonce(apps, operator_key):
    app_a, _ = apps
    envelope = sign_payload(operator_key[0], "ops", {"policy": {"workers": [], "chains": False}})
    response = await app_a.post(f"{API}/auth/i18n/reload", json=envelope)  # a policy is not a bundle
    assert response.status == 422
    assert (await app_a.post(f"{API}/auth/readiness-policy/reload", json=envelope)).status == 200


async def test_signed_locale_bundles_reach_every_api_process(apps, operator_key, database_url):
    envelope = sign_payload(operator_key[0], "ops", {"bundles": {"en": {"hello": "Hello"}, "fr": {"hello": "Bonjour"}}})
    response = await apps[0].post(f"{API}/auth/i18n/reload", json=envelope)
    assert response.status == 200, await response.text()
    for client in apps:
        async def loaded(client=client):
            return client.app[LIVE].locale_bundles.get("fr") == {"hello": "Bonjour"}

        assert await poll(loaded)
    response = await apps[1].post(f"{API}/auth/i18n/reload", json=envelope)
    assert response.status == 403 and await error_code(response) == "signed_payload_replayed"
    for payload in ({"bundles": {}}, {"bundles": {"en": {"hello": 1}}}, {"policy": {}}):
        response = await apps[0].post(f"{API}/auth/i18n/reload", json=sign_payload(operator_key[0], "ops", payload))
        assert response.status == 422, payload
    events = [event for event in await audit_events(database_url, "operator_config", "i18n")
              if event["data"].get("nonce") == envelope["payload"]["nonce"]]
    assert len(events) == 1 and events[0]["type"] == "i18n.reloaded"
    assert events[0]["data"]["locales"] == ["en", "fr"] and events[0]["data"]["messages"] == 2


async def test_reloads_are_refused_without_configured_operator_keys(client, operator_key):
    envelope = sign_payload(operator_key[0], "ops", {"policy": {"workers": [], "chains": False}})
    response = await client.post(f"{API}/auth/readiness-policy/reload", json=envelope)
    assert response.status == 401 and await error_code(response) == "unknown_operator_key"


async def test_a_process_started_later_loads_the_stored_policy(apps, operator_key, make_client, settings):
    envelope = sign_payload(operator_key[0], "ops", {"policy": FAILING_POLICY})
    assert (await apps[0].post(f"{API}/auth/readiness-policy/reload", json=envelope)).status == 200
    late = await make_client(settings)
    status, report = await readiness(late)
    assert status == 503 and report["failing"] == ["workers"]
