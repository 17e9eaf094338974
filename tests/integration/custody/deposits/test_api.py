"""The deposit routes against the real app: ingest (verified against Anvil), the wallet's list, status."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import uuid
from collections.abc import Iterator

import pytest
from dramatiq.brokers.redis import RedisBroker
from pydantic import SecretStr

from core.audit import AuditEvent
from custody.deposits import tracking
from custody.deposits.ingest import event_aggregate_id
from custody.deposits.models import CREDITED
from jobs.broker import close_broker, create_broker
from jobs.worker import start_worker
from tests.factories import consumed, wait_until

INGEST = "/api/v1/platform/crypto/scanner/ingest"
SECRET = "ingest-secret-for-tests-0123456789abcdef"
USDC = 10**6
ETH = 10**18


@pytest.fixture
def app_worker(redis_url: str, database_url: str) -> Iterator[RedisBroker]:
    """A deposits worker on the namespace the app sends to (this pytest worker's own Redis)."""
    broker = create_broker(redis_url, database_url=database_url, database_pool_size=4)
    broker.flush_all()
    worker = start_worker(broker, ["deposits"], worker_threads=2, poll_ms=50)
    yield broker
    worker.stop(timeout=10_000)
    broker.flush_all()
    close_broker(broker)


@pytest.fixture
async def api(make_client, settings, chain_settings):
    return await make_client(settings.model_copy(update={"chains": [chain_settings],
                                                         "ingest_hmac_secret": SecretStr(SECRET)}))


def signed(body: dict, secret: str = SECRET) -> tuple[bytes, dict[str, str]]:
    raw = json.dumps(body).encode()
    digest = hmac.new(secret.encode(), raw, hashlib.sha256).hexdigest()
    return raw, {"Content-Type": "application/json", "X-Signature": f"sha256={digest}"}


def event_of(chain: str, sent, address: str, asset: str, amount: str) -> dict:
    return {"chain": chain, "tx_hash": sent.tx_hash, "log_index": sent.log_index, "block_number": sent.block_number,
            "block_hash": sent.block_hash, "to_address": address, "asset": asset, "amount": amount}


async def wait_for_head(wallet, height: int) -> None:
    async def reached() -> bool:
        return await asyncio.to_thread(wallet.head) >= height

    await wait_until(reached, what=f"the chain at block {height}")


async def test_an_ingested_event_is_verified_recorded_and_credited_once_however_often_it_comes(
    api, login_as, deposits, wallet, chain_settings, app_worker
) -> None:
    operator = await login_as(api, "operator")
    user, address = await deposits.user_with_address()
    sent = await asyncio.to_thread(wallet.send_usdc, address, 42_250_000)
    event = event_of(chain_settings.name, sent, address.lower(), "usdc", "42.25")
    await wait_for_head(wallet, sent.block_number + chain_settings.confirmations - 1)

    first = await api.post(INGEST, json=event, headers=operator.headers)
    body = await first.json()
    assert first.status == 201, body
    assert body["to_address"] == address and body["asset"] == "USDC" and body["amount"] == "42.25"
    assert body["tx_hash"] == sent.tx_hash and body["log_index"] == sent.log_index
    assert body["confirmations"] >= chain_settings.confirmations and body["required_confirmations"] == 2

    again = await api.post(INGEST, json=event, headers=operator.headers)
    assert again.status == 200 and (await again.json())["id"] == body["id"]

    async def credited() -> bool:
        rows = await deposits.deposits(user)
        return len(rows) == 1 and rows[0].state == CREDITED

    await deposits.wait_for(credited, "the ingested deposit credited")
    third = await api.post(INGEST, json=event, headers=operator.headers)
    assert third.status == 200 and (await third.json())["state"] == "credited"
    (row,) = await deposits.deposits(user)
    assert row.source == "ingest"
    assert len(await deposits.transfers(row.key)) == 1
    assert await deposits.available(user, "USDC") == 42_250_000


async def test_a_service_may_sign_the_body_instead_of_logging_in(api, login_as, deposits, wallet,
                                                                 chain_settings) -> None:
    user, address = await deposits.user_with_address()
    sent = await asyncio.to_thread(wallet.send_native, address, ETH // 4)
    event = event_of(chain_settings.name, sent, address, "ETH", "0.25")

    raw, headers = signed(event)
    response = await api.post(INGEST, data=raw, headers=headers)
    assert response.status == 201, await response.text()

    forged, headers = signed({**event, "amount": "25"})
    headers["X-Signature"] = signed(event)[1]["X-Signature"]  # a signature of another body
    response = await api.post(INGEST, data=forged, headers=headers)
    assert response.status == 401 and (await response.json())["error"]["code"] == "invalid_signature"

    raw, headers = signed(event, secret="another-secret-of-the-right-length-000000")
    response = await api.post(INGEST, data=raw, headers=headers)
    assert response.status == 401 and (await response.json())["error"]["code"] == "invalid_signature"

    response = await api.post(INGEST, json=event)
    assert response.status == 401 and (await response.json())["error"]["code"] == "unauthorized"
    customer = await login_as(api)
    response = await api.post(INGEST, json=event, headers=customer.headers)
    assert response.status == 403
    assert len(await deposits.deposits(user)) == 1


async def test_an_event_the_chain_does_not_show_is_refused_and_the_refusal_audited(
    api, login_as, deposits, wallet, chain_settings
) -> None:
    operator = await login_as(api, "admin")
    user, address = await deposits.user_with_address()
    sent = await asyncio.to_thread(wallet.send_native, address, ETH)

    cases = {
        "made_up_transaction": ({"tx_hash": "0x" + uuid.uuid4().hex * 2}, "transaction_not_mined"),
        "inflated_amount": ({"amount": "10"}, "amount_differs"),
        "other_block": ({"block_hash": "0x" + "ab" * 32}, "block_hash_differs"),
        "as_a_token": ({"asset": "USDC", "log_index": 0}, "log_not_found"),
        "not_our_address": ({"to_address": "0x000000000000000000000000000000000000dEaD"}, "recipient_differs"),
    }
    for name, (change, reason) in cases.items():
        event = {**event_of(chain_settings.name, sent, address, "ETH", "1"), **change}
        response = await api.post(INGEST, json=event, headers=operator.headers)
        body = await response.json()
        assert response.status == 422, (name, body)
        assert body["error"]["code"] == "event_mismatch", (name, body)
        assert reason in body["error"]["details"]["reasons"], (name, body)
        aggregate = event_aggregate_id(chain_settings.name, event["tx_hash"], event["log_index"])
        assert await deposits.count(AuditEvent, AuditEvent.aggregate_type == "deposit_event",
                                    AuditEvent.aggregate_id == str(aggregate),
                                    AuditEvent.type == "deposit.event_mismatch") >= 1, name
    assert await deposits.deposits(user) == []


@pytest.mark.parametrize("change", [
    {"tx_hash": "0x1234"},
    {"amount": 1.5},
    {"amount": "-1"},
    {"log_index": -2},
    {"to_address": "not-an-address"},
    {"unexpected": "field"},
    {"chain": None},
], ids=["short_hash", "json_number", "negative", "log_index", "address", "extra_field", "no_chain"])
async def test_a_malformed_ingest_payload_is_422(api, login_as, chain_settings, change) -> None:
    operator = await login_as(api, "operator")
    event = {"chain": chain_settings.name, "tx_hash": "0x" + "11" * 32, "log_index": -1, "block_number": 1,
             "block_hash": "0x" + "22" * 32, "to_address": "0x" + "33" * 20, "asset": "ETH", "amount": "1",
             **change}
    response = await api.post(INGEST, json=event, headers=operator.headers)
    assert response.status == 422, await response.text()
    assert (await response.json())["error"]["code"] == "validation_error"


async def test_the_same_deposit_from_the_scanner_and_from_ingest_is_credited_once(
    api, login_as, deposits, wallet, chain_settings, app_worker, broker, custody_worker
) -> None:
    operator = await login_as(api, "operator")
    await deposits.start_scanner()
    user, address = await deposits.user_with_address()
    sent = await asyncio.to_thread(wallet.send_usdc, address, 7 * USDC)
    event = event_of(chain_settings.name, sent, address, "USDC", "7")
    for _ in range(3):
        response = await api.post(INGEST, json=event, headers=operator.headers)
        assert response.status in (200, 201), await response.text()

    async def credited() -> bool:
        rows = await deposits.deposits(user)
        return len(rows) == 1 and rows[0].state == CREDITED

    await deposits.wait_for(credited, "the deposit credited")

    async def both_workers_done() -> bool:
        """The app's credit messages (its namespace) and the scanner's (the test's) have all been run."""
        await tracking.drain_sends()
        return consumed(app_worker, "deposits") and consumed(broker, "deposits")

    await deposits.wait_for(both_workers_done, "both workers done with their messages")
    (row,) = await deposits.deposits(user)
    assert len(await deposits.transfers(row.key)) == 1
    assert await deposits.available(user, "USDC") == 7 * USDC


async def test_the_wallet_lists_the_callers_own_deposits_newest_first_in_pages(
    api, login_as, deposits, wallet, custody_worker
) -> None:
    await deposits.start_scanner()
    owner, other = await login_as(api), await login_as(api)
    address = await deposits.address_for(owner.user_id)
    await deposits.address_for(other.user_id)
    for amount in (1, 2, 3):
        await asyncio.to_thread(wallet.send_usdc, address, amount * USDC)
        await asyncio.to_thread(wallet.mine, 1)  # each in its own block: a stable "newest first"

    async def three() -> bool:
        return len(await deposits.deposits(owner.user_id)) == 3

    await deposits.wait_for(three, "three deposits seen")
    first = await api.get("/api/v1/wallet/deposits?limit=2", headers=owner.headers)
    page = await first.json()
    assert first.status == 200, page
    assert len(page["items"]) == 2 and page["next_cursor"]
    second = await api.get(f"/api/v1/wallet/deposits?limit=2&cursor={page['next_cursor']}", headers=owner.headers)
    rest = await second.json()
    assert len(rest["items"]) == 1 and rest["next_cursor"] is None
    items = page["items"] + rest["items"]
    assert [item["block_number"] for item in items] == sorted((item["block_number"] for item in items), reverse=True)
    assert {item["amount"] for item in items} == {"1", "2", "3"}
    assert all(item["state"] in ("seen", "confirming", "credited") and item["confirmations"] >= 1 for item in items)
    assert all(item["to_address"] == address and item["asset"] == "USDC" for item in items)

    theirs = await api.get("/api/v1/wallet/deposits", headers=other.headers)
    assert (await theirs.json()) == {"items": [], "next_cursor": None}
    refused = await api.get("/api/v1/wallet/deposits?cursor=not-a-cursor", headers=owner.headers)
    assert refused.status == 422


async def test_status_and_metrics_report_the_scanner_height_and_lag(api, deposits, wallet, chain_settings) -> None:
    await deposits.start_scanner()

    async def scanned() -> bool:
        body = await (await api.get("/api/v1/status")).json()
        (chain,) = body["chains"]
        return chain["scanner_height"] is not None

    await deposits.wait_for(scanned, "a scanner height in /status")
    (chain,) = (await (await api.get("/api/v1/status")).json())["chains"]
    assert chain["name"] == chain_settings.name and chain["height"] >= chain["scanner_height"]
    assert chain["lag"] == chain["height"] - chain["scanner_height"] and chain["lag"] >= 0
    wanted = (f'virtuoz_scanner_height{{chain="{chain_settings.name}"}}',
              f'virtuoz_scanner_lag_blocks{{chain="{chain_settings.name}"}}')

    async def exported() -> bool:
        # The lag needs the node's head, read with a short timeout: a loaded machine may miss a scrape.
        metrics = await (await api.get("/metrics")).text()
        return all(line in metrics for line in wanted)

    await deposits.wait_for(exported, "the scanner height and lag in /metrics")


async def test_no_scanner_yet_means_null_scanner_height(api, chain_settings) -> None:
    (chain,) = (await (await api.get("/api/v1/status")).json())["chains"]
    assert chain["height"] is not None and chain["scanner_height"] is None and chain["lag"] is None



async def test_ingest_authenticates_before_validating(make_client, settings) -> None:
    client = await make_client(settings.model_copy(update={"ingest_hmac_secret": SecretStr(SECRET)}))
    for raw, headers, code in [
        (b'{"chain": 1}', {"Content-Type": "application/json"}, "unauthorized"),
        (b"[[[[", {"Content-Type": "application/json"}, "unauthorized"),
        (b"x", {"Content-Type": "text/plain"}, "unauthorized"),
        (b'{"chain": 1}', {"Content-Type": "application/json", "X-Signature": "sha256=00"}, "invalid_signature"),
        (*signed({"chain": 1}, secret="another-secret-of-the-same-length-0123456"), "invalid_signature"),
    ]:
        response = await client.post(INGEST, data=raw, headers=headers)
        body = await response.json()
        assert response.status == 401, body
        assert body["error"]["code"] == code
    raw, headers = signed({"chain": 1})  # a valid signature over an invalid event: now it is validated
    response = await client.post(INGEST, data=raw, headers=headers)
    assert response.status == 422
