"""POST /platform/crypto/address/allocate and the allocation service, against real PostgreSQL and Redis."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import dramatiq
import pytest
import redis.asyncio
from sqlalchemy import func, select

from api.app import route_tables
from api.addresses.routes import addresses
from core.audit import AuditEvent
from core.db import unit_of_work
from custody.addresses.actors import refill
from custody.addresses import service
from custody.addresses.service import AddressPoolEmpty
from custody.hd import deposit_address
from jobs.broker import DEFAULT_NAMESPACE, queue_depths
from jobs.context import using_settings
from tests.factories import make_users
from tests.integration.custody.conftest import XPUB

from .conftest import fill_pool, pool_rows, unassigned

ALLOCATE = "/api/v1/platform/crypto/address/allocate"
RACERS = 50


@pytest.fixture
async def allocator_queue(redis_url: str) -> AsyncIterator[redis.asyncio.Redis]:
    """The default-namespace `allocator` queue the app sends to, emptied around the test."""
    client = redis.asyncio.Redis.from_url(redis_url)
    keys = [f"{DEFAULT_NAMESPACE}:allocator", f"{DEFAULT_NAMESPACE}:allocator.msgs"]
    await client.delete(*keys)
    yield client
    await client.delete(*keys)
    await client.aclose()


async def queued_refills(client: redis.asyncio.Redis) -> list[tuple]:
    bodies = await client.hvals(f"{DEFAULT_NAMESPACE}:allocator.msgs")
    messages = [dramatiq.Message.decode(body) for body in bodies]
    return [tuple(message.args) for message in messages if message.actor_name == "allocator.refill"]


@pytest.fixture
async def api(make_client, custody_settings):
    _, v1 = route_tables(custody_settings)
    extra = [] if any(table is addresses for table in v1) else [addresses]  # until api/app.py mounts it
    return await make_client(custody_settings, extra_routes=extra)


async def audit_count(factory, user_id: uuid.UUID, type_: str = "deposit_address.assigned") -> int:
    async with factory() as session:
        return await session.scalar(select(func.count()).select_from(AuditEvent).where(
            AuditEvent.aggregate_type == "user", AuditEvent.aggregate_id == str(user_id), AuditEvent.type == type_))


# --- the route --------------------------------------------------------------------------------


async def test_allocate_assigns_once_then_returns_the_same_address_for_every_asset_of_the_chain(
    api, login_as, factory, chain_name, allocator_queue
) -> None:
    await fill_pool(factory, chain_name, 3)
    customer = await login_as(api)

    first = await api.post(ALLOCATE, json={"chain": chain_name, "asset": "ETH"}, headers=customer.headers)
    body = await first.json()
    assert first.status == 201, body
    assert set(body) == {"address", "chain", "asset", "derivation_index", "created_at"}
    assert body["chain"] == chain_name and body["asset"] == "ETH"
    assert body["address"] == deposit_address(XPUB, body["derivation_index"])

    again = await api.post(ALLOCATE, json={"chain": chain_name, "asset": "usdc"}, headers=customer.headers)
    second = await again.json()
    assert again.status == 200, second
    assert second["asset"] == "USDC"
    assert {k: second[k] for k in ("address", "derivation_index", "created_at")} == \
        {k: body[k] for k in ("address", "derivation_index", "created_at")}

    assert await audit_count(factory, customer.user_id) == 1
    assert await unassigned(factory, chain_name) == 2
    assert (chain_name,) in await queued_refills(allocator_queue)  # the pool is topped up after commit


async def test_unknown_chain_and_asset_not_on_chain_are_422(api, login_as, factory, chain_name) -> None:
    await fill_pool(factory, chain_name, 1)
    customer = await login_as(api)

    response = await api.post(ALLOCATE, json={"chain": "nochain", "asset": "ETH"}, headers=customer.headers)
    assert response.status == 422 and (await response.json())["error"]["code"] == "unknown_chain"
    response = await api.post(ALLOCATE, json={"chain": chain_name, "asset": "BTC"}, headers=customer.headers)
    error = (await response.json())["error"]
    assert response.status == 422 and error["code"] == "asset_not_on_chain"
    assert error["details"]["assets"] == ["ETH", "USDC"]
    response = await api.post(ALLOCATE, json={"asset": "ETH"}, headers=customer.headers)
    assert response.status == 422 and (await response.json())["error"]["code"] == "validation_error"
    assert await unassigned(factory, chain_name) == 1  # nothing was taken


async def test_anonymous_is_401(api, chain_name) -> None:
    response = await api.post(ALLOCATE, json={"chain": chain_name, "asset": "ETH"})
    assert response.status == 401


async def test_a_customer_cannot_allocate_for_someone_else(api, login_as, factory, chain_name) -> None:
    await fill_pool(factory, chain_name, 2)
    customer, other = await login_as(api), await login_as(api)

    response = await api.post(ALLOCATE, json={"chain": chain_name, "asset": "ETH", "user_id": str(other.user_id)},
                              headers=customer.headers)
    assert response.status == 403, await response.text()
    assert await unassigned(factory, chain_name) == 2

    own = await api.post(ALLOCATE, json={"chain": chain_name, "asset": "ETH", "user_id": str(customer.user_id)},
                         headers=customer.headers)
    assert own.status == 201, await own.text()


async def test_an_operator_allocates_for_a_user_who_then_sees_the_same_address(api, login_as, factory,
                                                                                chain_name) -> None:
    await fill_pool(factory, chain_name, 2)
    operator, customer = await login_as(api, "operator"), await login_as(api)

    response = await api.post(ALLOCATE, json={"chain": chain_name, "asset": "USDC", "user_id": str(customer.user_id)},
                              headers=operator.headers)
    assigned = await response.json()
    assert response.status == 201, assigned

    own = await api.post(ALLOCATE, json={"chain": chain_name, "asset": "ETH"}, headers=customer.headers)
    assert own.status == 200 and (await own.json())["address"] == assigned["address"]

    async with factory() as session:
        event = await session.scalar(select(AuditEvent).where(
            AuditEvent.aggregate_type == "user", AuditEvent.aggregate_id == str(customer.user_id),
            AuditEvent.type == "deposit_address.assigned"))
    assert event.actor == str(operator.user_id)
    assert event.data == {"chain": chain_name, "address": assigned["address"],
                          "derivation_index": assigned["derivation_index"]}

    missing = await api.post(ALLOCATE, json={"chain": chain_name, "asset": "ETH", "user_id": str(uuid.uuid4())},
                             headers=operator.headers)
    assert missing.status == 404 and (await missing.json())["error"]["code"] == "user_not_found"


async def test_an_empty_pool_is_503_with_retry_after_and_requests_a_refill(
    api, login_as, factory, custody_settings, chain_name, allocator_queue
) -> None:
    customer = await login_as(api)

    response = await api.post(ALLOCATE, json={"chain": chain_name, "asset": "ETH"}, headers=customer.headers)
    assert response.status == 503
    assert (await response.json())["error"]["code"] == "address_pool_empty"
    assert int(response.headers["Retry-After"]) >= 1
    assert await queue_depths(allocator_queue, ["allocator"]) == {"allocator": 1}
    assert await queued_refills(allocator_queue) == [(chain_name,)]

    # The allocator runs that refill; the retry then gets an address.
    with using_settings(custody_settings):
        async with unit_of_work(factory) as session:
            await refill.fn(session, chain_name)
    assert await unassigned(factory, chain_name) == custody_settings.address_pool_batch
    retry = await api.post(ALLOCATE, json={"chain": chain_name, "asset": "ETH"}, headers=customer.headers)
    assert retry.status == 201, await retry.text()


async def test_concurrent_requests_of_one_user_get_one_address(api, login_as, factory, chain_name) -> None:
    await fill_pool(factory, chain_name, 5)
    customer = await login_as(api)

    responses = await asyncio.gather(*[
        api.post(ALLOCATE, json={"chain": chain_name, "asset": asset}, headers=customer.headers)
        for asset in ["ETH", "USDC"] * 5
    ])
    bodies = [await response.json() for response in responses]
    assert sorted(response.status for response in responses) == [200] * 9 + [201], bodies
    assert len({body["address"] for body in bodies}) == 1
    assert await unassigned(factory, chain_name) == 4
    assert await audit_count(factory, customer.user_id) == 1


# --- races on the service, many users at once -------------------------------------------------


async def _allocate(factory, custody_settings, user_id: uuid.UUID, chain: str, asset: str = "ETH"):
    async with unit_of_work(factory) as session:
        return await service.allocate(session, user_id, chain, asset, chains=custody_settings.chains)


async def test_fifty_users_at_once_get_fifty_distinct_addresses(factory, custody_settings, chain_name) -> None:
    await fill_pool(factory, chain_name, RACERS)
    users = await make_users(factory, RACERS)

    allocations = await asyncio.gather(*[_allocate(factory, custody_settings, user, chain_name) for user in users])

    addresses = {allocation.deposit_address.address for allocation in allocations}
    assert len(addresses) == RACERS
    assert all(allocation.newly_assigned for allocation in allocations)
    rows = await pool_rows(factory, chain_name)
    assert {row.user_id for row in rows} == set(users)
    assert await unassigned(factory, chain_name) == 0
    with pytest.raises(AddressPoolEmpty):  # the fifty-first finds the pool empty
        await _allocate(factory, custody_settings, (await make_users(factory, 1))[0], chain_name)


async def test_one_user_racing_on_every_asset_gets_one_address(factory, custody_settings, chain_name) -> None:
    await fill_pool(factory, chain_name, 5)
    [user] = await make_users(factory, 1)

    allocations = await asyncio.gather(*[
        _allocate(factory, custody_settings, user, chain_name, asset) for asset in ["ETH", "USDC"] * 10
    ])

    assert len({allocation.deposit_address.address for allocation in allocations}) == 1
    assert sum(allocation.newly_assigned for allocation in allocations) == 1
    assert await unassigned(factory, chain_name) == 4
    assert await audit_count(factory, user) == 1
