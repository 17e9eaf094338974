"""Webhooks end to end, as real processes on Anvil: a deposit credited by the scanner and the deposits
worker reaches an integrator's receiver (a real HTTP server on 127.0.0.1) as a signed
``deposit.credited``, POSTed by `virtuoz worker webhooks`; and a webhooks worker killed (SIGKILL)
while the receiver holds its POST open loses nothing: restarted, the event arrives again, same id.

One small cluster for the module: the API (the endpoint is made through `POST /webhooks`), the
allocator, the scanner, the deposits and webhooks workers and the scheduler (whose dispatch finds the
delivery the killed worker left), on the ground every e2e cluster stands on (``lay_ground``).
"""

from __future__ import annotations

import asyncio
import json
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from devnet.processes import free_port
from tests.chain_fixtures import usdc_artifact, usdc_cache_dir  # noqa: F401 - fixtures
from tests.chain_wallet import ChainWallet
from tests.e2e.sweep_cluster import kill
from tests.e2e.withdrawal_cluster import (
    CHAIN_ID,
    Cluster,
    User,
    lay_ground,
    stop_cluster,
)
from tests.webhook_receiver import Receiver, Reply

pytestmark = pytest.mark.e2e
TIMEOUT = 90.0  # a bound for a hung test, not a performance limit
DEPOSIT_WEI = 5 * 10**16  # 0.05 ETH
WEBHOOKS_WORKER = ["worker", "webhooks"]


def build_cluster(root: Path, postgres: Any, artifact: dict[str, Any]) -> Cluster:
    ground = lay_ground(root, postgres, artifact, database_prefix="webhooks", native_wei=10**18, usdc_minor=10**6)
    api_port = free_port()
    chains = [{"name": "ethereum", "chain_id": CHAIN_ID, "rpc_url": ground.anvil.rpc_url, "native": "ETH",
               "confirmations": 1, "tokens": {"USDC": ground.usdc}, "account": 0, "start_height": 0}]
    env = {
        **{name: value for name, value in os.environ.items() if not name.startswith("VIRTUOZ_")},
        "VIRTUOZ_ENV": "test",  # test: a receiver on loopback over http is admitted
        "VIRTUOZ_DATA_DIR": str(ground.data_dir),
        "VIRTUOZ_DATABASE_URL": ground.database_url,
        "VIRTUOZ_REDIS_URL": ground.redis.url(),
        "VIRTUOZ_CHAINS": json.dumps(chains),
        "VIRTUOZ_API_PORT": str(api_port),
        "VIRTUOZ_API_WORKERS": "2",  # the multi-process API, whatever the number of cores
        "VIRTUOZ_LOG_JSON": "false",
        "VIRTUOZ_HEARTBEAT_INTERVAL_SECONDS": "2",
        "VIRTUOZ_WORKER_POLL_MS": "50",
        "VIRTUOZ_SCANNER_POLL_SECONDS": "0.1",
        "VIRTUOZ_ADDRESS_POOL_LOW_WATER": "2",
        "VIRTUOZ_ADDRESS_POOL_BATCH": "4",
        "VIRTUOZ_SWEEP_MINIMUMS": "{}",  # nothing to sweep: no treasury worker here
        # The held POST must outlast the kill and the restart; the dispatch finds the delivery left behind.
        "VIRTUOZ_WEBHOOK_TIMEOUT_SECONDS": "60",
        "VIRTUOZ_WEBHOOK_DISPATCH_SECONDS": "0.5",
        "VIRTUOZ_WEBHOOK_RETRY_BASE_SECONDS": "0.2",
        "VIRTUOZ_WEBHOOK_RETRY_MAX_SECONDS": "1",
    }
    cluster = ground.cluster(artifact, f"http://127.0.0.1:{api_port}", env)
    for name in ("allocator", "deposits", "webhooks"):
        cluster.start(f"worker-{name}", ["worker", name])
    cluster.start("scanner", ["scanner", "--chain", "ethereum"])
    cluster.start("scheduler", ["scheduler"])
    cluster.start("api", ["api"])
    return cluster


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory, postgres, usdc_artifact) -> Iterator[Cluster]:  # noqa: F811
    cluster = build_cluster(tmp_path_factory.mktemp("webhooks"), postgres, usdc_artifact)
    try:
        yield cluster
    finally:
        stop_cluster(cluster)


@pytest.fixture(scope="module")
async def receiver() -> AsyncIterator[Receiver]:
    receiver = await Receiver().start()
    yield receiver
    await receiver.stop()


@pytest.fixture(scope="module")
async def integrator(cluster: Cluster, receiver: Receiver) -> AsyncIterator[tuple[User, str]]:
    """A customer with a webhook endpoint for ``deposit.credited`` at the receiver, and its secret."""
    await cluster.wait_ready()
    customer = await cluster.user()
    status, body = await cluster.call("POST", "/webhooks", customer.headers,
                                      {"url": receiver.url(), "events": ["deposit.credited"]})
    assert status == 201, body
    yield customer, body["secret"]


async def deposit(cluster: Cluster, customer: User) -> tuple[str, str]:
    """A deposit of 0.05 ETH to the customer's deposit address: (the address, the transaction's hash)."""
    found: dict[str, Any] = {}

    async def allocated() -> bool:
        status, body = await cluster.call("POST", "/platform/crypto/address/allocate", customer.headers,
                                          {"chain": "ethereum", "asset": "ETH"})
        found.update(body)
        return status in (200, 201)  # 503 while the allocator fills the pool

    await cluster.wait_for(allocated, "a deposit address", TIMEOUT)
    wallet = ChainWallet(cluster.anvil.rpc_url)
    sent = await asyncio.to_thread(wallet.send_native, found["address"], DEPOSIT_WEI)  # the receiver answers meanwhile
    return found["address"], sent.tx_hash


async def credited_event(cluster: Cluster, receiver: Receiver, tx_hash: str, *, count: int = 1) -> list[Any]:
    """The receiver's requests about the credit of the deposit made by ``tx_hash``, once there are ``count``."""
    def about() -> list[Any]:
        return [request for request in receiver.requests if request.document["type"] == "deposit.credited"
                and request.document["data"]["tx_hash"].lower() == tx_hash.lower()]

    async def arrived() -> bool:
        return len(about()) >= count

    await cluster.wait_for(arrived, f"{count} deposit.credited POST(s) about {tx_hash}", TIMEOUT)
    return about()


async def test_an_anvil_deposit_reaches_the_receiver_as_a_signed_deposit_credited(cluster, receiver,
                                                                                  integrator) -> None:
    customer, secret = integrator
    address, tx_hash = await deposit(cluster, customer)

    [request] = await credited_event(cluster, receiver, tx_hash)

    assert request.verifies(secret)
    assert request.headers["User-Agent"] == "VirtuOZ-Webhooks/1"
    document = request.document
    assert request.event_id == document["id"]
    [row] = await cluster.query("SELECT id, amount FROM deposits WHERE lower(tx_hash) = $1", tx_hash.lower())
    assert document["data"]["id"] == str(row["id"]) and document["data"]["state"] == "credited"
    assert document["data"]["amount"] == "0.05" and row["amount"] == DEPOSIT_WEI
    assert document["data"]["to_address"].lower() == address.lower()
    [delivery] = await cluster.query("SELECT state, attempts, last_status_code FROM webhook_deliveries"
                                     " WHERE event_id = $1", uuid.UUID(document["id"]))
    assert tuple(delivery) == ("delivered", 1, 200)


async def test_a_webhooks_worker_killed_mid_post_loses_nothing(cluster, receiver, integrator) -> None:
    customer, secret = integrator
    receiver.answer(Reply(hold=True, event_type="deposit.credited"))  # the next POST waits, unanswered
    _, tx_hash = await deposit(cluster, customer)
    [held] = await credited_event(cluster, receiver, tx_hash)

    kill(cluster, "worker-webhooks")  # SIGKILL while its POST is open: no answer, no commit
    cluster.start("worker-webhooks", WEBHOOKS_WORKER)

    first, again = await credited_event(cluster, receiver, tx_hash, count=2)
    assert first is held
    assert again.event_id == held.event_id and again.body == held.body and again.verifies(secret)

    async def delivered() -> bool:
        rows = await cluster.query("SELECT state FROM webhook_deliveries WHERE event_id = $1",
                                   uuid.UUID(held.event_id))
        return [row["state"] for row in rows] == ["delivered"]

    await cluster.wait_for(delivered, "the delivery recorded as delivered", TIMEOUT)
    # The killed attempt never committed: the one that answered is the only one on record.
    [row] = await cluster.query("SELECT attempts, last_status_code FROM webhook_deliveries WHERE event_id = $1",
                                uuid.UUID(held.event_id))
    assert tuple(row) == (1, 200)
    receiver.release()


async def test_a_receiver_answering_500_then_200_gets_the_same_event_again(cluster, receiver, integrator) -> None:
    customer, secret = integrator
    receiver.answer(Reply(status=500, body=b"try later", event_type="deposit.credited"))
    _, tx_hash = await deposit(cluster, customer)

    failed, retried = await credited_event(cluster, receiver, tx_hash, count=2)
    assert retried.event_id == failed.event_id and retried.body == failed.body and retried.verifies(secret)

    async def delivered() -> bool:
        rows = await cluster.query("SELECT state, attempts, last_status_code FROM webhook_deliveries"
                                   " WHERE event_id = $1", uuid.UUID(failed.event_id))
        return [tuple(row) for row in rows] == [("delivered", 2, 200)]

    await cluster.wait_for(delivered, "the delivery recorded as delivered on its second attempt", TIMEOUT)
