from __future__ import annotations

import pytest

from core.db import create_engine, session_factory
from custody.ledger.verify import verify_ledger
from tests.factories import make_escrow


@pytest.fixture
async def escrow_client(make_client, settings):
    """The app with play money for every new user, like the devnet."""
    return await make_client(settings.model_copy(update={"sandbox_credit": "USD:10000.00"}))


@pytest.fixture
def new_escrow():
    return make_escrow


@pytest.fixture
def act():
    async def post(client, user, escrow_id, action, body=None, *, expect=200):
        response = await client.post(f"/api/v1/escrow/{escrow_id}/{action}", json=body or {}, headers=user.headers)
        payload = await response.json()
        assert response.status == expect, payload
        return payload

    return post


@pytest.fixture
def balance():
    async def of(client, user, currency="USD"):
        balances = (await (await client.get("/api/v1/wallet/balances", headers=user.headers)).json())["balances"]
        return next(b for b in balances if b["currency"] == currency)

    return of


@pytest.fixture
async def ledger_is_consistent(database_url):
    yield
    engine = create_engine(database_url)
    async with session_factory(engine)() as session:
        problems = await verify_ledger(session)
    await engine.dispose()
    assert problems == []
