"""The scanner loop (in this process) and a real Dramatiq worker against Anvil and PostgreSQL."""

from __future__ import annotations

import asyncio
import socket

import aiohttp
import pytest
from aiohttp import web
from sqlalchemy import select

from core.audit import AuditEvent, as_dict, events_of, verify_chain
from core.db import unit_of_work
from notifications.service import Notification
from custody import freezes, ledger
from custody.deposits import crediting, tracking
from custody.deposits.actors import credit_deposit
from custody.deposits.models import CREDITED, REORGED, Deposit, ScannerCursor
from custody.ledger import verify_ledger
from custody.ledger.models import LedgerAccount
from scanner.follower import ScanConfig
from tests.factories import consumed, wait_until

from .conftest import FAST

ETH = 10**18
USDC = 10**6

pytestmark = pytest.mark.usefixtures("custody_worker")


async def credited(deposits, user_id, count: int = 1) -> bool:
    return sum(row.state == CREDITED for row in await deposits.deposits(user_id)) >= count


async def test_native_and_usdc_deposits_are_credited_once_after_the_confirmations_and_not_before(
    deposits, wallet, chain_settings
) -> None:
    chain_settings.confirmations = 3
    await deposits.start_scanner()
    user, address = await deposits.user_with_address()
    native = await asyncio.to_thread(wallet.send_native, address, ETH // 2)
    token = await asyncio.to_thread(wallet.send_usdc, address, 125_500_000)

    # Watch every state the deposits pass through: no credit may exist before the confirmations.
    observed: set[tuple[str, int]] = set()

    async def both_credited() -> bool:
        async with deposits.factory() as session:
            await session.connection(execution_options={"isolation_level": "REPEATABLE READ"})
            rows = list(await session.scalars(select(Deposit).where(Deposit.user_id == user)))
            balances = {item.currency.code: item.available for item in await ledger.balances(session, user)}
        for row in rows:
            observed.add((row.state, row.confirmations))
            expected = row.amount if row.state == CREDITED else 0
            assert balances.get(row.asset, 0) == expected, (row.state, row.confirmations, balances)
            assert row.state != CREDITED or row.confirmations >= 3
        return len(rows) == 2 and all(row.state == CREDITED for row in rows)

    await deposits.wait_for(both_credited, "both deposits credited")
    assert any(state in ("seen", "confirming") for state, _ in observed), observed

    rows = {row.asset: row for row in await deposits.deposits(user)}
    assert rows["ETH"].tx_hash == native.tx_hash and rows["ETH"].log_index == -1
    assert rows["ETH"].block_number == native.block_number and rows["ETH"].block_hash == native.block_hash
    assert rows["USDC"].tx_hash == token.tx_hash and rows["USDC"].log_index == token.log_index
    assert rows["USDC"].amount == 125_500_000 and rows["ETH"].amount == ETH // 2
    assert await deposits.available(user, "ETH") == ETH // 2
    assert await deposits.available(user, "USDC") == 125_500_000
    for row in rows.values():
        (transfer,) = await deposits.transfers(row.key)
        # Keyed on the log's index within its transaction (-1 for the native coin), not its place in the block.
        assert transfer.reference == f"deposit:{chain_settings.name}:{row.tx_hash}:{row.tx_log_index}"
        assert row.tx_log_index == (-1 if row.asset == "ETH" else 0)
        assert transfer.type == "deposit" and transfer.tx_hash == row.tx_hash and transfer.id == row.credit_transfer_id
        async with deposits.factory() as session:
            chain_of_events = [as_dict(event) for event in await events_of(session, "deposit", row.id)]
        assert [event["type"] for event in chain_of_events] == ["deposit.seen", "deposit.credited"]
        assert verify_chain(chain_of_events) == []  # the first event, bulk-written, hashes like any other
    kinds = [row.type for row in await notifications(deposits, user)]
    assert kinds.count("deposit.seen") == 2 and kinds.count("deposit.credited") == 2


async def notifications(deposits, user):
    async with deposits.factory() as session:
        return list(await session.scalars(select(Notification).where(Notification.user_id == user)
                                          .order_by(Notification.seq)))


async def test_a_credit_delivered_many_times_and_run_concurrently_credits_once(deposits, wallet, broker) -> None:
    await deposits.start_scanner()
    user, address = await deposits.user_with_address()
    await asyncio.to_thread(wallet.send_native, address, ETH)
    await deposits.wait_for(lambda: credited(deposits, user), "the deposit credited")
    (row,) = await deposits.deposits(user)

    # the same message, redelivered to the worker
    redelivered = [broker.enqueue(credit_deposit.message(str(row.id))).message_id for _ in range(3)]

    async def credit_once() -> bool:
        async with unit_of_work(deposits.factory) as session:
            return await crediting.credit(session, row.id)

    assert await asyncio.gather(*(credit_once() for _ in range(5))) == [False] * 5
    await wait_until(lambda: consumed(broker, "custody", redelivered), what="the redelivered credits run")
    assert len(await deposits.transfers(row.key)) == 1
    assert await deposits.available(user, "ETH") == ETH


async def test_scanner_restarted_after_fifty_blocks_with_deposits_credits_every_one(deposits, wallet) -> None:
    run = await deposits.start_scanner()
    users = [await deposits.user_with_address() for _ in range(5)]
    await deposits.wait_for(lambda: _cursor_at_head(deposits, wallet), "the scanner at the head")
    await run.halt()
    async with deposits.factory() as session:
        stopped_at = (await session.get(ScannerCursor, deposits.chain.name)).height

    # 50 blocks while the scanner is down, a deposit in every fifth one.
    sent = []
    for index in range(10):
        _, address = users[index % 5]
        if index % 2:
            sent.append(await asyncio.to_thread(wallet.send_native, address, ETH // 100 * (index + 1), wait=False))
        else:
            sent.append(await asyncio.to_thread(wallet.send_usdc, address, USDC * (index + 1), wait=False))
        await asyncio.to_thread(wallet.mine, 5)

    await deposits.start_scanner()
    await deposits.wait_for(lambda: _all_credited(deposits, 10), "all ten deposits credited", timeout=60)
    rows = await deposits.deposits()
    assert {row.tx_hash for row in rows} == {item.tx_hash for item in sent}
    assert all(row.block_number > stopped_at for row in rows)
    for user, _ in users:
        assert await deposits.available(user, "ETH") == sum(
            row.amount for row in rows if row.user_id == user and row.asset == "ETH")
        assert await deposits.available(user, "USDC") == sum(
            row.amount for row in rows if row.user_id == user and row.asset == "USDC")


async def _cursor_at_head(deposits, wallet) -> bool:
    async with deposits.factory() as session:
        cursor = await session.get(ScannerCursor, deposits.chain.name)
    return cursor is not None and cursor.height >= await asyncio.to_thread(wallet.head) - 1


async def _all_credited(deposits, count: int) -> bool:
    rows = await deposits.deposits()
    return len(rows) == count and all(row.state == CREDITED for row in rows)


async def test_a_deposit_reorged_before_its_credit_is_never_credited(deposits, wallet, chain_settings) -> None:
    chain_settings.confirmations = 1000  # never reached during the test
    await deposits.start_scanner()
    user, address = await deposits.user_with_address()
    sent = await asyncio.to_thread(wallet.send_native, address, ETH)
    await deposits.wait_for(lambda: _states(deposits, user, {"seen", "confirming"}), "the deposit seen")

    await asyncio.to_thread(wallet.reorg_from, sent.block_number)
    await deposits.wait_for(lambda: _states(deposits, user, {REORGED}), "the deposit reorged")
    (row,) = await deposits.deposits(user)
    assert row.credit_transfer_id is None and row.credits == 0
    assert await deposits.available(user, "ETH") == 0
    assert await deposits.transfers(row.key) == []


async def _states(deposits, user, states: set[str]) -> bool:
    rows = await deposits.deposits(user)
    return bool(rows) and all(row.state in states for row in rows)


async def test_a_credited_deposit_reorged_away_is_reversed_and_a_spent_one_freezes_withdrawals(
    deposits, wallet
) -> None:
    await deposits.start_scanner()
    keeper, keeper_address = await deposits.user_with_address()
    spender, spender_address = await deposits.user_with_address()
    first = await asyncio.to_thread(wallet.send_usdc, keeper_address, 40 * USDC)
    await asyncio.to_thread(wallet.send_usdc, spender_address, 60 * USDC)
    await deposits.wait_for(lambda: _all_credited(deposits, 2), "both deposits credited")

    # The spender moves 50 of the 60 USDC on (to the keeper) before the reorg.
    async with unit_of_work(deposits.factory) as session:
        await ledger.move(session, reference=f"spend:{spender}", type="test_spend",
                          source=ledger.AccountRef.user(spender), destination=ledger.AccountRef.user(keeper),
                          currency="USDC", amount=50 * USDC)

    await asyncio.to_thread(wallet.reorg_from, first.block_number)

    async def reversed_both() -> bool:
        rows = await deposits.deposits()
        return len(rows) == 2 and all(row.state == REORGED and row.reversed_at is not None for row in rows)

    await deposits.wait_for(reversed_both, "both credits reversed")
    assert await deposits.available(keeper, "USDC") == 50 * USDC  # its 40 back out, the 50 it was given stay
    assert await deposits.available(spender, "USDC") == 0  # 10 left, all taken; 50 short
    rows = {row.user_id: row for row in await deposits.deposits()}
    (reversal,) = await deposits.transfers(f"{rows[spender].key}:reversal")
    assert reversal.type == "deposit_reversal"
    async with deposits.factory() as session:
        assert await freezes.withdrawals_frozen(session, spender)
        assert not await freezes.withdrawals_frozen(session, keeper)
        receivable = await session.scalar(select(LedgerAccount.balance).where(
            LedgerAccount.owner_type == "system", LedgerAccount.kind == crediting.RECEIVABLE,
            LedgerAccount.currency == "USDC"))
        assert receivable <= -50 * USDC
        assert await verify_ledger(session) == []
    events = await deposits.count(AuditEvent, AuditEvent.aggregate_type == "deposit",
                                  AuditEvent.aggregate_id == str(rows[spender].id))
    assert events == 4  # seen, credited, reorged, reversed


async def test_a_credit_undone_by_evm_revert_and_a_new_longer_chain_is_reversed(deposits, wallet) -> None:
    """The node's chain first shrinks below the scanner's cursor, then grows past it with other blocks."""
    await deposits.start_scanner()
    user, address = await deposits.user_with_address()
    snapshot = await asyncio.to_thread(wallet.rpc, "evm_snapshot", [])
    await asyncio.to_thread(wallet.send_native, address, 2 * ETH)
    await deposits.wait_for(lambda: credited(deposits, user), "the deposit credited")
    await asyncio.to_thread(wallet.rpc, "evm_revert", [snapshot])  # the interval miner builds a new chain

    async def reversed_once() -> bool:
        rows = await deposits.deposits(user)
        return len(rows) == 1 and rows[0].state == REORGED and rows[0].reversed_at is not None

    await deposits.wait_for(reversed_once, "the reverted credit reversed")
    assert await deposits.available(user, "ETH") == 0
    async with deposits.factory() as session:
        assert await verify_ledger(session) == []
        assert not await freezes.withdrawals_frozen(session, user)


async def test_a_transaction_re_mined_in_the_new_chain_is_credited_once(deposits, wallet, broker) -> None:
    await deposits.start_scanner()
    user, address = await deposits.user_with_address()
    sent = await asyncio.to_thread(wallet.send_native, address, 3 * ETH)
    await deposits.wait_for(lambda: credited(deposits, user), "the deposit credited")

    await asyncio.to_thread(wallet.reorg_from, sent.block_number)
    await asyncio.to_thread(wallet.resend, sent.raw)  # the same transaction, mined again in the new chain

    async def credited_in_the_new_block() -> bool:
        rows = await deposits.deposits(user)
        return (len(rows) == 1 and rows[0].state == CREDITED
                and rows[0].block_hash != sent.block_hash)

    await deposits.wait_for(credited_in_the_new_block, "the re-mined deposit credited")
    await deposits.wait_for(lambda: custody_jobs_done(broker), "every credit and reversal sent run by the worker")
    (row,) = await deposits.deposits(user)
    assert row.state == CREDITED
    assert await deposits.available(user, "ETH") == 3 * ETH
    async with deposits.factory() as session:
        assert await verify_ledger(session) == []


async def test_node_outage_backs_off_and_resumes_without_skipping(deposits, wallet, chain_settings) -> None:
    proxy = await TcpProxy.start(chain_settings.rpc_url)
    chain_settings.rpc_url = proxy.url
    run = await deposits.start_scanner(ScanConfig(**{**FAST.__dict__, "max_backoff_seconds": 0.3}))
    user, address = await deposits.user_with_address()
    await deposits.wait_for(lambda: _cursor_at_head(deposits, wallet), "the scanner at the head")

    await proxy.pause()
    await asyncio.to_thread(wallet.send_native, address, ETH)
    await asyncio.to_thread(wallet.mine, 5)
    # The deposit is on the chain: the scanner fails to read it, backs off and fails again.
    failed_before = failures(run, chain_settings, "node")
    await wait_until(lambda: failures(run, chain_settings, "node") >= failed_before + 2,
                     what="the scanner failing and retrying")
    assert not run.task.done()
    assert await deposits.deposits(user) == []

    await proxy.resume()
    await deposits.wait_for(lambda: credited(deposits, user), "the deposit credited after the outage")
    await proxy.close()


async def test_malformed_node_answers_are_retried_never_skipped(deposits, wallet, chain_settings) -> None:
    node = await FlakyNode.start(chain_settings.rpc_url)
    chain_settings.rpc_url = node.url
    run = await deposits.start_scanner(ScanConfig(**{**FAST.__dict__, "max_backoff_seconds": 0.3}))
    user, address = await deposits.user_with_address()
    await deposits.wait_for(lambda: _cursor_at_head(deposits, wallet), "the scanner at the head")

    for mode in ("corrupt_blocks", "not_json", "http_500"):
        node.mode = mode
        sent = await asyncio.to_thread(wallet.send_usdc, address, USDC)
        await asyncio.to_thread(wallet.mine, 3)
        # The deposit is on the chain: the scanner reads garbage, backs off and reads garbage again.
        failed_before = failures(run, chain_settings, "node", "unexpected")
        await wait_until(lambda before=failed_before: failures(run, chain_settings, "node", "unexpected") >= before + 2,
                         what=f"the scanner failing and retrying on {mode}")
        assert not run.task.done(), mode
        assert sent.tx_hash not in {row.tx_hash for row in await deposits.deposits(user)}, mode
        node.mode = "forward"
        await deposits.wait_for(lambda: _has(deposits, user, sent.tx_hash), f"the deposit after {mode}")
    assert failures(run, chain_settings, "node", "unexpected") >= 3
    await deposits.wait_for(lambda: _all_credited(deposits, 3), "every deposit credited")
    await node.close()


def failures(run, chain_settings, *causes: str) -> float:
    """The scanner's failure counter, summed over ``causes``."""
    return sum(run.scanner.metrics.failures.labels(chain_settings.name, cause)._value.get() for cause in causes)


async def custody_jobs_done(broker) -> bool:
    """Every credit and reversal the scanner handed over is in Redis, and the worker has run them all."""
    await tracking.drain_sends()
    return consumed(broker, "custody")


async def _has(deposits, user, tx_hash: str) -> bool:
    return tx_hash in {row.tx_hash for row in await deposits.deposits(user)}


class FlakyNode:
    """A real HTTP JSON-RPC endpoint in front of the node that can answer garbage on demand."""

    def __init__(self, target: str) -> None:
        self.target = target
        self.mode = "forward"
        self.runner: web.AppRunner | None = None
        self.url = ""
        self.client: aiohttp.ClientSession | None = None

    @classmethod
    async def start(cls, target: str) -> FlakyNode:
        node = cls(target)
        app = web.Application()
        app.router.add_post("/", node._handle)
        node.runner = web.AppRunner(app)
        await node.runner.setup()
        site = web.TCPSite(node.runner, "127.0.0.1", 0)
        await site.start()
        node.url = f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}"  # type: ignore[union-attr]
        node.client = aiohttp.ClientSession()
        return node

    async def _handle(self, request: web.Request) -> web.Response:
        if self.mode == "http_500":
            return web.Response(status=500, text="upstream exploded")
        if self.mode == "not_json":
            return web.Response(status=200, text="<html>not json</html>", content_type="text/html")
        assert self.client is not None
        async with self.client.post(self.target, data=await request.read(),
                                    headers={"Content-Type": "application/json"}) as upstream:
            answer = await upstream.json()
        if self.mode == "corrupt_blocks":
            for item in answer if isinstance(answer, list) else [answer]:
                if isinstance(item.get("result"), dict) and "parentHash" in item["result"]:
                    item["result"]["hash"] = "0xnot-a-hash"
        return web.json_response(answer)

    async def close(self) -> None:
        assert self.client is not None and self.runner is not None
        await self.client.close()
        await self.runner.cleanup()


class TcpProxy:
    """A real TCP forwarder to the node that can refuse connections (an outage, not a mock)."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.server: asyncio.base_events.Server | None = None
        self.port = 0
        self.connections: set[asyncio.StreamWriter] = set()

    @classmethod
    async def start(cls, url: str) -> TcpProxy:
        host, port = url.removeprefix("http://").split(":")
        proxy = cls(host, int(port))
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            proxy.port = probe.getsockname()[1]
        await proxy.resume()
        return proxy

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def resume(self) -> None:
        self.server = await asyncio.start_server(self._forward, "127.0.0.1", self.port)

    async def pause(self) -> None:
        assert self.server is not None
        self.server.close()
        for writer in list(self.connections):
            writer.close()
        await self.server.wait_closed()

    async def close(self) -> None:
        if self.server is not None and self.server.is_serving():
            await self.pause()

    async def _forward(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        upstream_reader, upstream_writer = await asyncio.open_connection(*self.target)
        self.connections |= {writer, upstream_writer}

        async def pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
            try:
                while data := await source.read(65536):
                    sink.write(data)
                    await sink.drain()
            except (ConnectionError, OSError):
                pass
            finally:
                sink.close()

        await asyncio.gather(pipe(reader, upstream_writer), pipe(upstream_reader, writer))
        self.connections -= {writer, upstream_writer}
