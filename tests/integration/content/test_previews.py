"""Content platform previews: i18n messages (packaged and signed-reloaded) and the CMS next status."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from core import control
from content.states import ACTIONS, STATES, TRANSITIONS
from core.signing import generate_keypair, sign_payload
from tests.integration.conftest import missing_tables
from tests.integration.content.conftest import API, poll

MESSAGE = f"{API}/platform/i18n/message"
NEXT_STATUS = f"{API}/platform/cms/workflow/next-status"
PARAMS = {"escrow_title": "Servers", "amount": "8000.00", "currency": "USDC"}


@pytest.fixture
async def operator(cms_client, login_as):
    return await login_as(cms_client, "operator")


@pytest.fixture
async def restore_bundles(redis_url: str) -> AsyncIterator[None]:
    """Reloaded bundles live in Redis for every app of this pytest worker: drop them after."""
    yield
    redis = Redis.from_url(redis_url)
    await redis.delete(control.I18N_KEY)
    await control.publish(redis, "i18n")
    await redis.aclose()


async def message(client, headers, **payload):
    response = await client.post(MESSAGE, json=payload, headers=headers)
    return response.status, await response.json()


async def test_message_in_the_requested_locale_with_fallback(cms_client, operator):
    status, body = await message(cms_client, operator.headers, key="escrow.funded", locale="de-AT", params=PARAMS)
    assert status == 200, body
    assert body == {"message": "Treuhand „Servers“ ist mit 8000.00 USDC gedeckt.", "locale_used": "de"}
    status, body = await message(cms_client, operator.headers, key="escrow.funded", locale="ja", params=PARAMS)
    assert body["locale_used"] == "en" and body["message"].startswith("Escrow “Servers”")


async def test_plural_forms(cms_client, operator):
    results = {}
    for locale, count in [("en", 1), ("en", 3), ("fr", 0), ("fr", 2)]:
        _, body = await message(cms_client, operator.headers, key="deposit.credited", locale=locale,
                                params={"count": count, "amount": "1", "currency": "ETH"})
        results[(locale, count)] = body["message"]
    assert results[("en", 1)].startswith("A deposit") and results[("en", 3)].startswith("3 deposits")
    assert results[("fr", 0)].startswith("Un dépôt") and results[("fr", 2)].startswith("2 dépôts")


async def test_unknown_key_is_404_and_missing_param_is_422(cms_client, operator):
    status, body = await message(cms_client, operator.headers, key="no.such.key", locale="en")
    assert status == 404 and body["error"]["code"] == "message_not_found"
    status, body = await message(cms_client, operator.headers, key="escrow.funded", locale="en",
                                 params={"escrow_title": "x", "amount": "1"})
    assert status == 422 and body["error"]["details"] == {"parameter": "currency"}
    assert "currency" in body["error"]["message"]
    status, body = await message(cms_client, operator.headers, key="escrow.funded", locale="not a locale")
    assert status == 422


async def test_who_may_resolve_messages(cms_client, login_as):
    for role, expected in [("support", 200), ("admin", 200), ("compliance", 403), ("customer", 403)]:
        user = await login_as(cms_client, role)
        status, _ = await message(cms_client, user.headers, key="ticket.reply", locale="fr",
                                  params={"ticket_subject": "x"})
        assert status == expected, role


async def test_signed_reload_swaps_bundles_over_the_packaged_ones(make_client, settings, login_as, restore_bundles):
    private, public = generate_keypair()
    configured = settings.model_copy(update={"operator_public_keys": {"ops": public}})
    client = await make_client(configured, extra_routes=missing_tables(configured))
    operator = await login_as(client, "operator")
    bundles = {"de": {"escrow.funded": "Neu: {escrow_title}", "deposit.credited#one": "eine",
                      "deposit.credited#other": "{count} viele"},
               "it": {"escrow.funded": "Deposito {escrow_title}"}}
    response = await client.post(f"{API}/auth/i18n/reload", json=sign_payload(private, "ops", {"bundles": bundles}))
    assert response.status == 200, await response.text()

    async def reloaded():
        _, body = await message(client, operator.headers, key="escrow.funded", locale="de-AT", params=PARAMS)
        return body.get("message") == "Neu: Servers"

    assert await poll(reloaded, timeout=10), "the reload did not reach the app"
    _, body = await message(client, operator.headers, key="deposit.credited", locale="de", params={"count": 4})
    assert body["message"] == "4 viele"
    _, body = await message(client, operator.headers, key="escrow.released", locale="de", params=PARAMS)
    assert body["message"].startswith("Treuhand „Servers“ wurde freigegeben")  # packaged text kept
    _, body = await message(client, operator.headers, key="escrow.funded", locale="it-IT", params=PARAMS)
    assert body == {"message": "Deposito Servers", "locale_used": "it"}


@pytest.mark.parametrize(("state", "to"), list(itertools.product(STATES, STATES)))
async def test_next_status_by_target_matches_the_table(cms_client, operator, state, to):
    response = await cms_client.post(NEXT_STATUS, json={"state": state, "to": to}, headers=operator.headers)
    body = await response.json()
    assert response.status == 200, body
    expected = to if any(source == state and target == to for (source, _), target in TRANSITIONS.items()) else None
    assert body["allowed"] is (expected is not None) and body["next"] == expected
    assert body["allowed_moves"] == [{"action": a, "to": t} for (s, a), t in TRANSITIONS.items() if s == state]


async def test_next_status_by_action(cms_client, login_as):
    compliance = await login_as(cms_client, "compliance")
    for state, action in itertools.product(STATES, ACTIONS):
        response = await cms_client.post(NEXT_STATUS, json={"state": state, "action": action},
                                         headers=compliance.headers)
        body = await response.json()
        assert body["next"] == TRANSITIONS.get((state, action)), (state, action)


async def test_next_status_input_is_validated(cms_client, operator, login_as):
    for payload in ({"state": "draft"}, {"state": "draft", "action": "submit", "to": "in_review"},
                    {"state": "limbo", "to": "draft"}, {"state": "draft", "action": "teleport"}):
        response = await cms_client.post(NEXT_STATUS, json=payload, headers=operator.headers)
        assert response.status == 422, payload
    customer = await login_as(cms_client)
    response = await cms_client.post(NEXT_STATUS, json={"state": "draft", "to": "in_review"},
                                     headers=customer.headers)
    assert response.status == 403
