"""GET /wallet/balances and /wallet/activity through the real app, as a user registered and logged
in through the real auth routes."""

from __future__ import annotations

import uuid

import pytest

from api.app import route_tables
from api.wallet.routes import wallet
from core.db import unit_of_work
from custody import ledger

API = "/api/v1"


@pytest.fixture
async def wallet_client(make_client, settings):
    # Mounted by the app once wired into its route table; until then, mounted here.
    wired = any(table is wallet for table in route_tables(settings)[1])
    return await make_client(settings, extra_routes=[] if wired else [wallet])


async def get(client, path, headers, status=200):
    response = await client.get(f"{API}{path}", headers=headers)
    body = await response.json()
    assert response.status == status, body
    return body


async def test_balances_need_a_login(wallet_client):
    assert (await get(wallet_client, "/wallet/balances", {}, 401))["error"]["code"] == "unauthorized"
    assert (await get(wallet_client, "/wallet/activity", {}, 401))["error"]["code"] == "unauthorized"


async def test_a_new_user_sees_usd_at_zero(wallet_client, login_as):
    user = await login_as(wallet_client)
    body = await get(wallet_client, "/wallet/balances", user.headers)
    assert body == {"balances": [{"currency": "USD", "available": "0.00", "held": "0.00", "total": "0.00"}]}
    assert await get(wallet_client, "/wallet/activity", user.headers) == {"items": [], "next_cursor": None}


async def test_balances_show_decimal_strings_per_currency(wallet_client, login_as, sessions):
    user = await login_as(wallet_client)
    async with unit_of_work(sessions) as session:
        await ledger.sandbox_credit(session, user.user_id, "USD:10000.00,ETH:1.5,USDC:250")
        await ledger.hold(session, f"escrow:{uuid.uuid4()}", user.user_id, "USD", 80_000, type="escrow_hold",
                          reference_kind="escrow", reference_id="e-42")
    body = await get(wallet_client, "/wallet/balances", user.headers)
    assert body == {"balances": [
        {"currency": "ETH", "available": "1.5", "held": "0", "total": "1.5"},
        {"currency": "USD", "available": "9200.00", "held": "800.00", "total": "10000.00"},
        {"currency": "USDC", "available": "250", "held": "0", "total": "250"},
    ]}
    page = await get(wallet_client, "/wallet/activity?currency=USD", user.headers)
    assert [{k: item[k] for k in ("type", "currency", "amount", "direction", "reference", "tx_hash")}
            for item in page["items"]] == [
        {"type": "escrow_hold", "currency": "USD", "amount": "800.00", "direction": "out",
         "reference": {"kind": "escrow", "id": "e-42"}, "tx_hash": None},
        {"type": "sandbox_credit", "currency": "USD", "amount": "10000.00", "direction": "in",
         "reference": {"kind": "user", "id": str(user.user_id)}, "tx_hash": None},
    ]
    first = page["items"][0]
    assert uuid.UUID(first["id"]) and first["created_at"].endswith("Z")


async def test_activity_pages_with_an_opaque_cursor(wallet_client, login_as, sessions):
    user = await login_as(wallet_client)
    async with unit_of_work(sessions) as session:
        for n in range(5):
            await ledger.move(session, reference=f"deposit:{uuid.uuid4()}", type="deposit",
                              source=ledger.AccountRef.system("chain_deposits"),
                              destination=ledger.AccountRef.user(user.user_id), currency="ETH",
                              amount=(n + 1) * 10**17, tx_hash=f"0x{n:064x}")
    amounts, cursor = [], None
    while True:
        page = await get(wallet_client, "/wallet/activity?limit=2" + (f"&cursor={cursor}" if cursor else ""),
                         user.headers)
        assert len(page["items"]) <= 2
        amounts += [item["amount"] for item in page["items"]]
        if not (cursor := page["next_cursor"]):
            break
    assert amounts == ["0.5", "0.4", "0.3", "0.2", "0.1"]


@pytest.mark.parametrize(("query", "code"), [
    ("limit=0", "validation_error"), ("limit=101", "validation_error"), ("limit=ten", "validation_error"),
    ("cursor=garbage", "invalid_cursor"), ("currency=usd", "validation_error"), ("currency=XYZ", "unknown_currency"),
])
async def test_activity_refuses_bad_queries(wallet_client, login_as, query, code):
    user = await login_as(wallet_client)
    body = await get(wallet_client, f"/wallet/activity?{query}", user.headers, 422)
    assert body["error"]["code"] == code


async def test_the_wallet_routes_are_in_the_openapi_document(wallet_client):
    document = await (await wallet_client.get(f"{API}/openapi.json")).json()
    assert {"/api/v1/wallet/balances", "/api/v1/wallet/activity"} <= set(document["paths"])
    limit = next(p for p in document["paths"]["/api/v1/wallet/activity"]["get"]["parameters"] if p["name"] == "limit")
    assert (limit["schema"]["minimum"], limit["schema"]["maximum"]) == (1, 100)
