"""The deposit address pool: refilled from the xpub, by the allocator job, idempotently."""

from __future__ import annotations

from datetime import timedelta

import dramatiq
import pytest
import redis.asyncio
from bip_utils import Bip32Secp256k1, Bip39SeedGenerator, EthAddr

from core.db import unit_of_work
from custody.addresses.actors import refill, refill_all
from custody.addresses.pool import XpubMismatch, refill_pool
from custody.hd import XpubError, deposit_address
from jobs.broker import queue_depths
from jobs.context import using_settings
from jobs.scheduler import build_scheduler
from tests.factories import make_users
from tests.integration.custody.conftest import MNEMONIC, XPUB, account_xpub, write_xpub_file

from .conftest import pool_rows, unassigned


async def test_refill_derives_the_next_indexes_until_above_the_low_water_mark(factory, chain_name) -> None:
    async with unit_of_work(factory) as session:
        assert await refill_pool(session, chain_name, XPUB, low_water=3, batch=2) == 4  # whole batches past 3

    rows = await pool_rows(factory, chain_name)
    assert [row.derivation_index for row in rows] == [0, 1, 2, 3]
    assert all(row.user_id is None and row.assigned_at is None for row in rows)
    # The allocator's public derivation is the wallet's private one: m/44'/60'/0'/0/i.
    root = Bip32Secp256k1.FromSeed(Bip39SeedGenerator(MNEMONIC).Generate(""))
    for row in rows:
        assert row.address == EthAddr.EncodeKey(root.DerivePath(f"m/44'/60'/0'/0/{row.derivation_index}")
                                                .PublicKey().KeyObject())

    async with unit_of_work(factory) as session:  # above the mark: a redelivered message changes nothing
        assert await refill_pool(session, chain_name, XPUB, low_water=3, batch=2) == 0

    # Two addresses assigned: 2 left, at or below the mark, so one more batch from index 4.
    user_ids = await make_users(factory, 2)
    async with unit_of_work(factory) as session:
        for row, user_id in zip(rows[:2], user_ids, strict=True):
            merged = await session.merge(row)
            merged.user_id = user_id
            merged.assigned_at = merged.created_at
    async with unit_of_work(factory) as session:
        assert await refill_pool(session, chain_name, XPUB, low_water=3, batch=2) == 2
    assert [row.derivation_index for row in await pool_rows(factory, chain_name)] == [0, 1, 2, 3, 4, 5]
    assert await unassigned(factory, chain_name) == 4


async def test_a_different_xpub_is_refused_instead_of_mixing_seeds(factory, chain_name) -> None:
    async with unit_of_work(factory) as session:
        await refill_pool(session, chain_name, XPUB, low_water=0, batch=1)
    user_id = (await make_users(factory, 1))[0]
    async with unit_of_work(factory) as session:  # the one address is taken: a refill is due
        row = await session.merge((await pool_rows(factory, chain_name))[0])
        row.user_id, row.assigned_at = user_id, row.created_at

    with pytest.raises(XpubMismatch, match="index 0"):
        async with unit_of_work(factory) as session:
            await refill_pool(session, chain_name, account_xpub(1), low_water=0, batch=1)
    assert len(await pool_rows(factory, chain_name)) == 1


async def test_refill_job_reads_the_xpub_file_and_fills_to_the_settings(factory, custody_settings, chain_name) -> None:
    settings = custody_settings.model_copy(update={"address_pool_low_water": 5, "address_pool_batch": 8})
    with using_settings(settings):
        async with unit_of_work(factory) as session:
            await refill.fn(session, chain_name)
        async with unit_of_work(factory) as session:
            await refill.fn(session, chain_name)  # twice: the second is a no-op
    rows = await pool_rows(factory, chain_name)
    assert [row.derivation_index for row in rows] == list(range(8))
    assert rows[5].address == deposit_address(XPUB, 5)


async def test_refill_job_refuses_an_xpub_file_without_the_chain(factory, custody_settings, chain_name) -> None:
    write_xpub_file(custody_settings, [])  # signed by the signer, but for no chain
    with using_settings(custody_settings), pytest.raises(XpubError, match="no xpub for chain"):
        async with unit_of_work(factory) as session:
            await refill.fn(session, chain_name)
    assert await pool_rows(factory, chain_name) == []


async def test_refill_all_sends_one_refill_per_configured_chain(factory, custody_settings, chain_name, namespace,
                                                                redis_url) -> None:
    with using_settings(custody_settings):
        async with unit_of_work(factory) as session:
            await refill_all.fn(session)
    client = redis.asyncio.Redis.from_url(redis_url)
    try:
        assert await queue_depths(client, ["allocator"], namespace=namespace) == {"allocator": 1}
    finally:
        await client.aclose()


async def test_the_scheduler_asks_for_pool_refills_at_start_and_every_minute(broker, settings, namespace,
                                                                             redis_url) -> None:
    scheduled = build_scheduler(settings, broker).get_job("deposit-address-pools")
    assert scheduled.trigger.interval == timedelta(minutes=1)
    assert scheduled.next_run_time is not None  # at start too: a fresh devnet has its pools at once
    scheduled.func(*scheduled.args)

    client = redis.asyncio.Redis.from_url(redis_url)
    try:
        assert await queue_depths(client, ["allocator"], namespace=namespace) == {"allocator": 1}
        [body] = await client.hvals(f"{namespace}:allocator.msgs")
    finally:
        await client.aclose()
    assert dramatiq.Message.decode(body).actor_name == "allocator.refill_all"
