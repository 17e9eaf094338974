"""The scheduled reconciliation: hot wallets and deposit addresses on a real Anvil chain against the
ledger's liabilities, stored as a `reconciliation` report by the compliance worker.

Time is advanced by telling the job what moment it is (``as_of``), never by sleeping.
"""

from __future__ import annotations

import asyncio
import functools
import json
import random
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from prometheus_client import REGISTRY
from eth_account import Account
from sqlalchemy import func, select

from compliance.reporting.actors import reconcile_balances
from compliance.reporting.models import ComplianceReport
from compliance.reporting.service import previous_interval
from core.db import unit_of_work
from core.settings import ChainSettings, Settings
from custody.addresses.models import DepositAddress
from custody.chains import EvmChain
from custody.hd import retired_hot_wallet_address, signed_xpubs
from custody.ledger.models import LedgerAccount
from jobs.scheduler import build_scheduler
from tests.chain_fixtures import anvil_chain, usdc_artifact, usdc_cache_dir  # noqa: F401
from tests.factories import run_schedule_entry
from tests.integration.compliance.conftest import drain, report_file
from tests.integration.compliance.review.test_reconcile import credited_deposit, mined
from tests.integration.custody.conftest import account_xpub, write_xpub_file
from tests.integration.custody.deposits.conftest import usdc_address, wallet  # noqa: F401

ETH = 10**18


@pytest.fixture
def chain_settings(anvil_chain, usdc_address: str) -> ChainSettings:  # noqa: F811
    return ChainSettings(name=f"recon{uuid.uuid4().hex[:8]}", chain_id=31337, rpc_url=anvil_chain.rpc_url,
                         native="ETH", confirmations=1, tokens={"USDC": usdc_address},
                         account=random.randrange(1_000, 2**31 - 1), cold_wallet=Account.create().address)


@pytest.fixture
def job_settings(settings: Settings, chain_settings: ChainSettings, tmp_path: Path) -> Settings:
    write_xpub_file(settings, [chain_settings])
    return settings.model_copy(update={"chains": [chain_settings],
                                       "reconciliation_interval_hours": 6, "reconciliation_jurisdiction": "FATF"})


async def liabilities(factory, currency: str) -> Decimal:
    async with factory() as session:
        total = await session.scalar(select(func.coalesce(func.sum(LedgerAccount.balance), 0)).where(
            LedgerAccount.owner_type == "user", LedgerAccount.currency == currency))
    return Decimal(int(total)).scaleb(-18 if currency == "ETH" else -6)


async def reconciliations(factory, start: datetime) -> list[ComplianceReport]:
    async with factory() as session:
        return list((await session.scalars(select(ComplianceReport).where(
            ComplianceReport.type == "reconciliation", ComplianceReport.period_start == start,
            ComplianceReport.unique_key.like("scheduled:FATF:reconciliation:%")))).all())


async def test_the_schedule_enqueues_the_reconciliation_job(broker, redis_url, namespace, job_settings) -> None:
    assert await run_schedule_entry(broker, redis_url, namespace, "compliance-reconciliation", "reports") == 1
    job = build_scheduler(job_settings, broker).get_job("compliance-reconciliation")
    assert "hour='*/6'" in str(job.trigger) and "minute='5'" in str(job.trigger)
    broker.flush_all()


async def test_the_job_compares_hot_wallet_and_deposit_addresses_with_the_liabilities_once_per_interval(
        broker, factory, job_settings, chain_settings, wallet, login_as, client) -> None:  # noqa: F811
    user = await login_as(client)
    hot = signed_xpubs(job_settings)[chain_settings.name].hot_wallet
    # The hot wallet of before the move still holds the platform's money until it is moved.
    retired = retired_hot_wallet_address(account_xpub(chain_settings.account))
    deposit_address = Account.create().address
    async with unit_of_work(factory) as session:
        session.add(DepositAddress(chain=chain_settings.name, derivation_index=0, address=deposit_address,
                                   user_id=user.user_id, assigned_at=datetime.now(UTC)))
    into_deposit = await asyncio.to_thread(wallet.send_native, deposit_address, 3 * ETH // 4)
    await asyncio.to_thread(wallet.send_native, hot, 2 * ETH)
    await asyncio.to_thread(wallet.send_native, retired, ETH // 2)
    # What the treasury sent to cold storage is still the platform's.
    await asyncio.to_thread(wallet.send_native, chain_settings.cold_wallet, 2 * ETH // 5)
    usdc = await asyncio.to_thread(wallet.send_usdc, deposit_address, 30_000_000)
    await mined(wallet, usdc, depth=1)
    await credited_deposit(factory, chain_settings, user.user_id, into_deposit, deposit_address, "ETH", 3 * ETH // 4)
    await credited_deposit(factory, chain_settings, user.user_id, usdc, deposit_address, "USDC", 30_000_000)

    later = datetime.now(UTC) + timedelta(hours=6)  # the interval that contains now has ended by then
    start, end = previous_interval(later, 6)
    broker.enqueue(reconcile_balances.message(later.isoformat()))
    broker.enqueue(reconcile_balances.message((later + timedelta(minutes=30)).isoformat()))  # the same interval
    await drain(broker, job_settings)

    (report,) = await reconciliations(factory, start)
    assert (report.state, report.period_end, report.jurisdiction) == ("ready", end, "FATF"), report.error
    rows = {row["currency"]: row for row in json.loads(await report_file(job_settings, report.json_path))["rows"]}
    head = await asyncio.to_thread(wallet.head)
    eth, usdc_row = rows["ETH"], rows["USDC"]
    assert (eth["hot_wallets"], eth["cold_wallets"], eth["deposit_addresses"], eth["onchain_balance"]) == (
        "2.5", "0.4", "0.75", "3.65")
    assert (usdc_row["hot_wallets"], usdc_row["cold_wallets"], usdc_row["deposit_addresses"],
            usdc_row["onchain_balance"]) == ("0", "0", "30", "30")
    block = int(eth["blocks"].split("@")[1])
    assert eth["blocks"].startswith(f"{chain_settings.name}@") and usdc.block_number <= block <= head
    for row, currency in ((eth, "ETH"), (usdc_row, "USDC")):
        owed = await liabilities(factory, currency)
        assert Decimal(row["customer_liabilities"]) == owed
        assert Decimal(row["difference"]) == Decimal(row["onchain_balance"]) - owed
        assert row["status"] == ("covered" if Decimal(row["difference"]) >= 0 else "shortfall")
    assert report.rows == len(rows) and report.sha256
    # What Prometheus scrapes from the compliance worker: the same differences, and whether one is short.
    for row, currency, decimals in ((eth, "ETH", 18), (usdc_row, "USDC", 6)):
        sample = functools.partial(REGISTRY.get_sample_value, labels={"currency": currency})
        assert sample("virtuoz_reconciliation_difference_minor") == float(int(Decimal(row["difference"]) * 10**decimals))
        assert sample("virtuoz_reconciliation_shortfall") == (0 if row["status"] == "covered" else 1)
        assert sample("virtuoz_reconciliation_as_of_timestamp_seconds") == end.timestamp()

    # The next interval is a report of its own.
    broker.enqueue(reconcile_balances.message((later + timedelta(hours=6)).isoformat()))
    await drain(broker, job_settings)
    assert len(await reconciliations(factory, start)) == 1
    assert [r.state for r in await reconciliations(factory, end)] == ["ready"]


async def test_without_chains_nothing_is_compared(broker, factory, settings) -> None:
    later = datetime(2031, 1, 1, tzinfo=UTC) + timedelta(hours=random.randrange(0, 24 * 3000))
    broker.enqueue(reconcile_balances.message(later.isoformat()))
    await drain(broker, settings.model_copy(update={"reconciliation_interval_hours": 24}))
    start, _ = previous_interval(later, 24)
    async with factory() as session:
        (report,) = (await session.scalars(select(ComplianceReport).where(
            ComplianceReport.type == "reconciliation", ComplianceReport.period_start == start,
            ComplianceReport.unique_key.like("scheduled:FATF:reconciliation:%")))).all()
    rows = json.loads(await report_file(settings, report.json_path))["rows"]
    assert report.state == "ready" and all(row["status"] == "not_compared" for row in rows)


async def test_block_at_finds_the_last_block_at_or_before_a_moment(anvil_chain, wallet) -> None:  # noqa: F811
    async with EvmChain("anvil", anvil_chain.rpc_url) as chain:
        head = await chain.head()
        for number in sorted({1, head // 2, head}):
            stamp = (await chain.block(number)).timestamp
            # Blocks come every 0.2 s with whole-second timestamps: one mined after this read may
            # share the stamp, and the answer is "as of the call".
            existing = await chain.head()
            found = await chain.block_at(stamp)
            assert found is not None and found.timestamp == stamp
            if found.number < existing:
                assert (await chain.block(found.number + 1)).timestamp > stamp
        assert await chain.block_at((await chain.block(0)).timestamp - 1) is None
        assert (await chain.block_at(2**40)).number >= head


@pytest.mark.parametrize("hours", [5, 7, 0, 25], ids=["5h", "7h", "0h", "25h"])
def test_the_interval_divides_the_day(hours) -> None:
    with pytest.raises(ValueError, match="reconciliation_interval_hours"):
        Settings(reconciliation_interval_hours=hours)
