"""Money in flight while the processes die: nothing lost, nothing done twice.

20 deposits and 20 withdrawals are in flight on a cluster of real processes (its own PostgreSQL,
Redis and Anvil) while the custody worker, the deposits worker, the signer and the scanner are each
killed with SIGKILL and started again, and PostgreSQL and Redis are restarted once. Afterwards
every withdrawal is confirmed once, every deposit credited once, the hot wallet's mined nonces run
without a gap or a repeat, and `virtuoz ledger verify` and `virtuoz audit verify` pass. The test
prints what it killed and what it found.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from devnet.processes import free_port
from devnet.servers import EmbeddedPostgres
from tests.chain_fixtures import usdc_artifact, usdc_cache_dir  # noqa: F401 - fixtures
from tests.chain_wallet import ChainWallet
from tests.e2e.withdrawal_cluster import REPO_ROOT, Cluster, build_cluster, fresh_address, stop_cluster

pytestmark = pytest.mark.e2e

IN_FLIGHT = 20
DEPOSITORS = 4
DEPOSIT_WEI = 10**16  # 0.01 ETH
WITHDRAWAL = "0.01"
FINISH_TIMEOUT = 180.0  # a bound for a hung test, not a performance limit

# What each restart does: the name of a cluster process and the argv it runs.
KILLED = {
    "worker-custody": ["worker", "custody"],
    "worker-deposits": ["worker", "deposits"],
    "scanner": ["scanner", "--chain", "ethereum"],
}


@pytest.fixture
def cluster(tmp_path: Path, usdc_artifact: dict[str, Any]) -> Iterator[tuple[Cluster, EmbeddedPostgres]]:  # noqa: F811
    # Its own PostgreSQL: restarting the server the other tests share would fail them.
    postgres = EmbeddedPostgres(tmp_path / "postgres", free_port(), log_dir=tmp_path).start()
    cluster = build_cluster(tmp_path / "cluster", postgres, usdc_artifact)
    try:
        cluster.env.update({"VIRTUOZ_SCANNER_POLL_SECONDS": "0.1", "VIRTUOZ_SCANNER_MAX_BACKOFF_SECONDS": "1"})
        cluster.start("allocator", ["worker", "allocator"])
        for name, argv in KILLED.items():
            cluster.start(name, argv)
        yield cluster, postgres
    finally:
        stop_cluster(cluster)
        postgres.stop()


def sigkill_and_restart(cluster: Cluster, name: str) -> None:
    if name == "signer":
        cluster.kill_signer()
        cluster.start_signer()
        return
    process = cluster.processes[name].process
    assert process is not None
    process.kill()
    process.wait(10)
    cluster.start(name, KILLED[name])


def restart_server(server: Any) -> None:
    server.stop()
    server.start()


async def answers_meanwhile(cluster: Cluster, user: Any, action: Callable[[], None]) -> Counter[int]:
    """The statuses of a customer's reads while ``action`` runs: an outage answers 503, never 500."""
    statuses: Counter[int] = Counter()
    done = asyncio.Event()

    async def read() -> None:
        while not done.is_set():
            status, _ = await cluster.call("GET", "/wallet/balances", user.headers)
            statuses[status] += 1
            await asyncio.sleep(0.02)

    reading = asyncio.create_task(read())
    await asyncio.to_thread(action)
    await asyncio.sleep(0.5)  # and a moment after, when the pools meet the restarted server
    done.set()
    await reading
    return statuses


async def deposit_address(cluster: Cluster, user: Any) -> str:
    answers: list[dict[str, Any]] = []

    async def allocated() -> bool:
        status, body = await cluster.call("POST", "/platform/crypto/address/allocate", user.headers,
                                          {"chain": "ethereum", "asset": "ETH"})
        answers.append(body)
        return status in (200, 201)  # 503 address_pool_empty while the allocator fills the pool

    await cluster.wait_for(allocated, "a deposit address")
    return answers[-1]["address"]


async def test_kill9_mid_flow_loses_nothing(cluster: tuple[Cluster, EmbeddedPostgres]) -> None:
    cluster, postgres = cluster
    await cluster.wait_ready()
    wallet = ChainWallet(cluster.anvil.rpc_url)
    start_height = wallet.head()
    customer = await cluster.user()
    approvers = [await cluster.approver() for _ in range(IN_FLIGHT)]  # one TOTP step each: no waiting
    depositors = [await cluster.user() for _ in range(DEPOSITORS)]
    addresses = [await deposit_address(cluster, depositor) for depositor in depositors]

    destinations = [fresh_address() for _ in range(IN_FLIGHT)]
    requested = [await cluster.request(customer, chain="ethereum", asset="ETH", to_address=address,
                                       amount=WITHDRAWAL) for address in destinations]
    withdrawal_ids = [item["id"] for item in requested]
    # Approved before the first fault: from here on the withdrawals move only through the workers,
    # the signer and the chain, the processes being killed.
    await cluster.approve_all(approvers, withdrawal_ids)
    faults: list[tuple[str, str]] = []
    found: list[tuple[str, str]] = []
    # Deposits and faults interleaved: each fault lands while money is moving.
    schedule = ["worker-custody", "signer", "worker-deposits", "scanner", "postgres", "redis"]
    for index in range(IN_FLIGHT):
        await asyncio.to_thread(wallet.send_native, addresses[index % DEPOSITORS], DEPOSIT_WEI, wait=False)
        if index % 3 == 2 and schedule:
            fault = schedule.pop(0)
            started = time.monotonic()
            if fault == "postgres":
                answers = await answers_meanwhile(cluster, customer, lambda: restart_server(postgres))
                found.append(("API while PostgreSQL restarts", ", ".join(f"{count}x {status}" for status, count
                                                                         in sorted(answers.items()))))
                assert set(answers) <= {200, 503}, answers
            elif fault == "redis":
                await asyncio.to_thread(restart_server, cluster.redis_server)  # type: ignore[attr-defined]
            else:
                await asyncio.to_thread(sigkill_and_restart, cluster, fault)
            faults.append((fault, f"{'restarted' if fault in ('postgres', 'redis') else 'SIGKILL, restarted'}"
                                  f" in {time.monotonic() - started:.1f}s"))
    assert not schedule, "every fault was injected"

    finals = await cluster.wait_final(customer, withdrawal_ids, timeout=FINISH_TIMEOUT)

    async def all_credited() -> bool:
        rows = await cluster.query("SELECT state FROM deposits WHERE chain = 'ethereum' AND lower(to_address) = ANY($1)",
                                   [address.lower() for address in addresses])
        return len(rows) == IN_FLIGHT and all(row["state"] == "credited" for row in rows)

    await cluster.wait_for(all_credited, f"{IN_FLIGHT} deposits credited", FINISH_TIMEOUT)

    states = sorted({final["state"] for final in finals})
    found.append(("withdrawals", f"{len(finals)} final, states {states}"))
    assert states == ["confirmed"], finals
    paid = [cluster.web3.eth.get_balance(address) for address in destinations]
    found.append(("destinations paid once", f"{sum(value == Decimal(WITHDRAWAL) * 10**18 for value in paid)}"
                                            f"/{IN_FLIGHT}"))
    assert paid == [int(Decimal(WITHDRAWAL) * 10**18)] * IN_FLIGHT

    credits = await cluster.query(
        "SELECT d.id, count(t.id) AS credits FROM deposits d LEFT JOIN ledger_transfers t"
        " ON t.reference_kind = 'deposit' AND t.reference_id = d.id::text AND t.type = 'deposit'"
        " WHERE lower(d.to_address) = ANY($1) GROUP BY d.id", [address.lower() for address in addresses])
    found.append(("deposits credited once", f"{sum(row['credits'] == 1 for row in credits)}/{IN_FLIGHT}"))
    assert len(credits) == IN_FLIGHT and all(row["credits"] == 1 for row in credits), credits
    balances = await cluster.query(
        "SELECT count(*) AS n FROM deposits WHERE lower(to_address) = ANY($1) AND amount = $2",
        [address.lower() for address in addresses], DEPOSIT_WEI)
    assert balances[0]["n"] == IN_FLIGHT

    nonces = await asyncio.to_thread(hot_wallet_nonces, cluster, start_height)
    found.append(("hot wallet nonces", f"{len(nonces)} mined, {nonces[0] if nonces else '-'}…"
                                       f"{nonces[-1] if nonces else '-'}"))
    assert nonces == list(range(nonces[0], nonces[0] + len(nonces))), nonces
    assert len(nonces) >= IN_FLIGHT

    for command in (["ledger", "verify"], ["audit", "verify"]):
        result = await asyncio.to_thread(subprocess.run, [sys.executable, "-m", "cli", *command], env=cluster.env,
                                         cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
        found.append((" ".join(command), "OK" if result.returncode == 0 else "FAILED"))
        assert result.returncode == 0, result.stdout + result.stderr

    print("\nkilled / restarted:")
    for name, what in faults:
        print(f"  {name:<18} {what}")
    print("found:")
    for name, what in found:
        print(f"  {name:<24} {what}")


def hot_wallet_nonces(cluster: Cluster, start_height: int) -> list[int]:
    """The nonces of every transaction the hot wallet got mined since ``start_height``, in order."""
    web3 = cluster.web3
    nonces = []
    for number in range(start_height, web3.eth.block_number + 1):
        for transaction in web3.eth.get_block(number, full_transactions=True)["transactions"]:
            if transaction["from"] == cluster.hot_wallet:
                nonces.append(transaction["nonce"])
    return sorted(nonces)
