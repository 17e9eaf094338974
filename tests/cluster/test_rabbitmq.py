"""Withdrawals end to end with Dramatiq on RabbitMQ: API, custody and compliance workers, scheduler
and the signer all on amqp://, Redis kept for pub/sub, throttles and in-flight claims; then the
broker restarts under them and the platform carries on."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator

import pytest
import redis

from devnet.servers import RabbitMQ
from jobs.broker import create_broker, queue_lengths
from tests.chain_fixtures import usdc_artifact, usdc_cache_dir  # noqa: F401 - fixtures
from tests.e2e.withdrawal_cluster import Cluster, build_cluster, fresh_address, stop_cluster

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory, postgres, usdc_artifact, rabbitmq: RabbitMQ  # noqa: F811
            ) -> Iterator[Cluster]:
    cluster = build_cluster(tmp_path_factory.mktemp("rabbit-withdrawals"), postgres, usdc_artifact,
                            extra_env={"VIRTUOZ_BROKER_URL": rabbitmq.url()})
    try:
        yield cluster
    finally:
        stop_cluster(cluster)


@pytest.fixture(scope="module")
async def people(cluster: Cluster) -> AsyncIterator[dict]:
    await cluster.wait_ready()
    yield {"customer": await cluster.user(), "operator": await cluster.approver()}


async def withdraw(cluster: Cluster, people: dict, amounts: list[str]) -> list[dict]:
    customer, operator = people["customer"], people["operator"]
    created = [await cluster.request(customer, chain="ethereum", asset="ETH", to_address=fresh_address(),
                                     amount=amount) for amount in amounts]
    for withdrawal in created:
        assert (await cluster.approve(operator, withdrawal["id"]))["state"] == "approved"
    return await cluster.wait_final(customer, [withdrawal["id"] for withdrawal in created])


def redis_queue_keys(cluster: Cluster) -> list[bytes]:
    client = redis.Redis.from_url(cluster.redis_url)
    try:
        return [key for key in client.keys("dramatiq:*") if b"inflight" not in key]
    finally:
        client.close()


async def test_withdrawals_are_signed_and_mined_through_rabbitmq(cluster: Cluster, people: dict,
                                                                 rabbitmq: RabbitMQ) -> None:
    finals = await withdraw(cluster, people, ["0.5", "0.25"])
    assert [final["state"] for final in finals] == ["confirmed", "confirmed"], finals
    nonces = sorted(final["nonce"] for final in finals)
    assert nonces[1] == nonces[0] + 1
    # The messages went through RabbitMQ: Redis holds no Dramatiq queue, only the claims kept beside them.
    assert redis_queue_keys(cluster) == []
    broker = create_broker(cluster.redis_url, broker_url=rabbitmq.url())
    try:
        lengths = await asyncio.to_thread(queue_lengths, broker, ["signer", "custody"])
    finally:
        broker.close()
    assert lengths["signer"].dead == lengths["custody"].dead == 0


async def test_the_platform_carries_on_after_rabbitmq_restarts(cluster: Cluster, people: dict,
                                                               rabbitmq: RabbitMQ) -> None:
    await asyncio.to_thread(rabbitmq.stop)
    await asyncio.to_thread(rabbitmq.start)
    finals = await withdraw(cluster, people, ["0.125", "0.0625"])
    assert [final["state"] for final in finals] == ["confirmed", "confirmed"], finals
    hashes = await cluster.query("SELECT tx_hash FROM withdrawals WHERE state = 'confirmed'")
    assert len({row["tx_hash"] for row in hashes}) == len(hashes)
    cluster.check_alive()
