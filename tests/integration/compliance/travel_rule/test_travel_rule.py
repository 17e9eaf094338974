"""Travel Rule transfers through the real routes: upsert (create, update, refusals), who may, the
recent list, audit events, transitions with their notifications, inbound records and the expiry job."""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
import redis.asyncio
from sqlalchemy import select

from compliance.travel_rule import ivms101
from compliance.travel_rule import service as travel_rule
from compliance.travel_rule.actors import expire_travel_rule
from core import audit
from core.db import unit_of_work
from core.errors import InvalidState
from core.settings import ChainSettings, Settings, VaspDirectoryEntry
from jobs.context import using_settings
from jobs.registry import bind_broker
from jobs.scheduler import build_scheduler
from jobs.worker import start_worker
from notifications.service import Notification
from tests.factories import run_schedule_entry
from tests.integration.compliance.conftest import JOIN_TIMEOUT_MS

API = "/api/v1"
UPSERT = f"{API}/compliance/travel-rule"
RECENT = f"{API}/compliance/travel-rule/recent"
DESTINATION = "0x70997970C51812dc3A010C7d01b50e0d17dc79C8"
LEI = "5493001KJTIIGC8Y1R12"


@pytest.fixture
def travel_settings(settings: Settings) -> Settings:
    chain = ChainSettings(name="ethereum", chain_id=31337, rpc_url="http://127.0.0.1:1", native="ETH",
                          tokens={}, confirmations=1)
    return settings.model_copy(update={
        "chains": [chain], "sandbox_credit": "ETH:10", "withdrawal_fees": {"ETH": "0.001"},
        "withdrawal_travel_rule_thresholds": {"ETH": "100"}, "withdrawal_four_eyes_thresholds": {"ETH": "100"},
        "travel_rule_expiry_hours": 72.0,
    })


@pytest.fixture
async def client(make_client, travel_settings: Settings):
    return await make_client(travel_settings)


def payload(**changes: Any) -> dict[str, Any]:
    body = {
        "external_id": f"ext-{uuid.uuid4().hex}",
        "originator": {"natural_person": {
            "name": {"name_identifiers": [{"primary_identifier": "Lovelace", "secondary_identifier": "Ada",
                                           "name_identifier_type": "LEGL"}]},
            "geographic_addresses": [{"address_type": "HOME", "street_name": "Rue Sherbrooke O",
                                      "building_number": "1380", "post_code": "H3G 1J5", "town_name": "Montreal",
                                      "country": "CA"}]},
            "account_numbers": ["acct-1"]},
        "beneficiary": {"natural_person": {"name": {"name_identifiers": [
            {"primary_identifier": "Hopper", "secondary_identifier": "Grace", "name_identifier_type": "LEGL"}]}},
            "account_numbers": [DESTINATION]},
        "originating_vasp": {"legal_person": {"name": "VirtuOZ Devnet VASP", "lei": LEI}},
        "beneficiary_vasp": {"legal_person": {"name": "Example Exchange Ltd"}},
        "transfer": {"asset": "ETH", "amount": "1.5", "chain": "ethereum", "destination": DESTINATION},
    }
    body.update(changes)
    return body


async def upsert(client, user, body: dict[str, Any], status: int) -> dict[str, Any]:
    response = await client.post(UPSERT, json=body, headers=user.headers)
    assert response.status == status, await response.text()
    return await response.json()


async def withdrawal(client, user, amount: str = "1") -> dict[str, Any]:
    response = await client.post(f"{API}/platform/crypto/withdrawals/request", headers=user.headers,
                                 json={"chain": "ethereum", "asset": "ETH", "to_address": DESTINATION,
                                       "amount": amount})
    assert response.status == 201, await response.text()
    return await response.json()


async def events(factory, transfer_id: str) -> list[audit.AuditEvent]:
    async with factory() as session:
        return await audit.events_of(session, "travel_rule", transfer_id)


# --- create and update --------------------------------------------------------------------------

async def test_an_officer_creates_then_updates_a_draft_by_external_id(client, login_as, factory) -> None:
    officer = await login_as(client, "compliance")
    body = payload()
    created = await upsert(client, officer, body, 201)
    assert (created["state"], created["direction"], created["external_id"]) == ("draft", "outbound", body["external_id"])
    assert created["transfer"] == {"asset": "ETH", "amount": "1.5", "chain": "ethereum", "destination": DESTINATION,
                                   "tx_hash": None, "withdrawal_id": None, "deposit_id": None}
    assert created["originator"]["natural_person"]["name"]["name_identifiers"][0]["primary_identifier"] == "Lovelace"
    assert created["originating_vasp"]["legal_person"]["lei"] == LEI
    assert uuid.UUID(created["request_identifier"]) and created["created_by"] == str(officer.user_id)
    assert created["expires_at"] > created["created_at"]

    body["transfer"]["amount"] = "2"
    body["beneficiary"]["account_numbers"] = ["acct-9"]
    updated = await upsert(client, officer, body, 200)
    assert updated["id"] == created["id"]
    assert (updated["transfer"]["amount"], updated["beneficiary"]["account_numbers"]) == ("2", ["acct-9"])

    # The same data again: the same record, no change, no event.
    assert (await upsert(client, officer, body, 200))["updated_at"] == updated["updated_at"]
    # And by id.
    assert (await upsert(client, officer, {**body, "id": created["id"]}, 200))["id"] == created["id"]

    recorded = await events(factory, created["id"])
    assert [(event.type, event.actor) for event in recorded] == [("travel_rule.created", str(officer.user_id)),
                                                               ("travel_rule.updated", str(officer.user_id))]
    assert recorded[0].data["amount"] == "1.5" and recorded[0].data["state"] == "draft"
    assert recorded[1].data == {"changed": ["amount", "beneficiary"],
                                "fields": {"amount": "2", "beneficiary": {"natural_person": {"name": {
                                    "name_identifiers": [{"primary_identifier": "Hopper",
                                                          "secondary_identifier": "Grace",
                                                          "name_identifier_type": "LEGL"}],
                                    "local_name_identifiers": [], "phonetic_name_identifiers": []},
                                    "geographic_addresses": []}, "account_numbers": ["acct-9"]}}}


async def test_missing_ivms101_fields_are_each_named(client, login_as) -> None:
    officer = await login_as(client, "compliance")
    body = payload(originator={"natural_person": {"name": {"name_identifiers": [{"secondary_identifier": "Ada"}]}}},
                   beneficiary_vasp={"legal_person": {}})
    body["transfer"] = {"asset": "ETH"}
    response = await client.post(UPSERT, json=body, headers=officer.headers)
    assert response.status == 422
    error = (await response.json())["error"]
    assert error["code"] == "validation_error"
    assert {item["field"] for item in error["details"]["fields"]} == {
        "originator.natural_person.name.name_identifiers.0.primary_identifier",
        "originator.natural_person.geographic_addresses", "originator.natural_person.national_identification",
        "originator.natural_person.customer_identification", "originator.natural_person.date_and_place_of_birth",
        "beneficiary_vasp.legal_person.name",
        "transfer.amount", "transfer.chain", "transfer.destination",
    }


async def test_amounts_are_decimal_strings_of_the_asset(client, login_as) -> None:
    officer = await login_as(client, "compliance")
    for amount, code in ((1.5, "validation_error"), ("1.0000000000000000001", "invalid_amount"), ("0", "invalid_amount")):
        body = payload()
        body["transfer"]["amount"] = amount
        response = await client.post(UPSERT, json=body, headers=officer.headers)
        assert (response.status, (await response.json())["error"]["code"]) == (422, code)
    body = payload()
    body["transfer"]["asset"] = "NOPE"
    response = await client.post(UPSERT, json=body, headers=officer.headers)
    assert (response.status, (await response.json())["error"]["code"]) == (422, "unknown_currency")


async def test_only_a_draft_not_yet_sent_is_updated(client, login_as, factory) -> None:
    officer = await login_as(client, "compliance")
    body = payload(send=True, travel_address="https://vasp.example/trp/inquiry")
    created = await upsert(client, officer, body, 201)
    assert created["state"] == "draft" and created["send_requested_at"] is not None
    body["transfer"]["amount"] = "3"
    response = await client.post(UPSERT, json=body, headers=officer.headers)
    assert response.status == 409
    error = (await response.json())["error"]
    assert error["code"] == "travel_rule_not_editable"
    assert error["details"] == {"state": "draft", "send_requested": True, "fields": ["amount"]}

    async with unit_of_work(factory) as session:
        transfer = await travel_rule.get(session, uuid.UUID(created["id"]), lock=True)
        await travel_rule.transition(session, transfer, "send", actor="test")
    response = await client.post(UPSERT, json=body, headers=officer.headers)
    assert (response.status, (await response.json())["error"]["code"]) == (409, "travel_rule_not_editable")
    body["transfer"]["amount"] = "1.5"
    assert (await upsert(client, officer, body, 200))["state"] == "sent"  # unchanged data: no error
    assert [event.type for event in await events(factory, created["id"])] == [
        "travel_rule.created", "travel_rule.send_requested", "travel_rule.sent"]


async def test_send_queues_the_compliance_worker_job(client, login_as, redis_url) -> None:
    officer = await login_as(client, "operator")
    created = await upsert(client, officer, payload(send=True), 201)
    connection = redis.asyncio.Redis.from_url(redis_url)
    try:
        messages = [json.loads(raw) for raw in (await connection.hgetall("dramatiq:compliance.msgs")).values()]
    finally:
        await connection.aclose()
    assert {"actor_name": "compliance.send_travel_rule", "args": [created["id"]]}.items() <= next(
        message for message in messages if message["args"] == [created["id"]]).items()


# --- who may --------------------------------------------------------------------------------------

async def test_the_owner_files_data_for_their_own_withdrawal_only(client, login_as, factory) -> None:
    owner, stranger = await login_as(client), await login_as(client)
    mine = await withdrawal(client, owner)
    body = payload(transfer={"withdrawal_id": mine["id"]})
    created = await upsert(client, owner, body, 201)
    # The withdrawal's own transfer data fills what was left out.
    assert created["transfer"] == {"asset": "ETH", "amount": "1", "chain": "ethereum", "destination": DESTINATION,
                                   "tx_hash": None, "withdrawal_id": mine["id"], "deposit_id": None}
    assert created["user_id"] == str(owner.user_id)

    # A stranger learns nothing of someone else's withdrawal, or of its transfer.
    response = await client.post(UPSERT, json=payload(transfer={"withdrawal_id": mine["id"]}), headers=stranger.headers)
    assert (response.status, (await response.json())["error"]["code"]) == (404, "withdrawal_not_found")
    theirs = await withdrawal(client, stranger)
    response = await client.post(UPSERT, json={**body, "transfer": {"withdrawal_id": theirs["id"]}},
                                 headers=stranger.headers)
    assert (response.status, (await response.json())["error"]["code"]) == (404, "travel_rule_transfer_not_found")
    # Without a withdrawal a customer may file nothing.
    response = await client.post(UPSERT, json=payload(), headers=stranger.headers)
    assert (response.status, (await response.json())["error"]["code"]) == (403, "travel_rule_forbidden")

    # What is given must match the withdrawal.
    response = await client.post(UPSERT, json=payload(transfer={"withdrawal_id": theirs["id"], "amount": "2",
                                                                "asset": "ETH"}), headers=stranger.headers)
    assert response.status == 422
    error = (await response.json())["error"]
    assert error["code"] == "travel_rule_link_mismatch"
    assert [item["field"] for item in error["details"]["fields"]] == ["transfer.amount"]
    # One live transfer per withdrawal.
    response = await client.post(UPSERT, json=payload(transfer={"withdrawal_id": mine["id"]}), headers=owner.headers)
    assert (response.status, (await response.json())["error"]["code"]) == (409, "travel_rule_link_taken")

    # The owner's update of their own draft works, and an officer may update it too.
    body["originator"]["account_numbers"] = ["acct-2"]
    assert (await upsert(client, owner, body, 200))["originator"]["account_numbers"] == ["acct-2"]
    officer = await login_as(client, "compliance")
    body["originator"]["account_numbers"] = ["acct-3"]
    assert (await upsert(client, officer, body, 200))["originator"]["account_numbers"] == ["acct-3"]
    actors = [event.actor for event in await events(factory, created["id"])]
    assert actors == [str(owner.user_id), str(owner.user_id), str(officer.user_id)]


@pytest.mark.parametrize("roles,status", [(("compliance",), 201), (("operator",), 201), (("customer",), 403),
                                          (("support",), 403)], ids=["compliance", "operator", "customer", "support"])
async def test_who_may_upsert_without_a_withdrawal(client, login_as, roles, status) -> None:
    user = await login_as(client, *roles)
    response = await client.post(UPSERT, json=payload(), headers=user.headers)
    assert response.status == status, await response.text()


async def test_anonymous_callers_are_refused(client) -> None:
    assert (await client.post(UPSERT, json=payload())).status == 401
    assert (await client.get(RECENT)).status == 401


@pytest.mark.parametrize("roles,status", [(("compliance",), 200), (("admin",), 200), (("operator",), 403),
                                          (("customer",), 403)], ids=["compliance", "admin", "operator", "customer"])
async def test_who_may_read_the_recent_list(client, login_as, roles, status) -> None:
    user = await login_as(client, *roles)
    assert (await client.get(RECENT, headers=user.headers)).status == status


# --- the recent list ------------------------------------------------------------------------------

async def test_recent_is_newest_first_with_filters(client, login_as, factory) -> None:
    officer = await login_as(client, "compliance")
    first = await upsert(client, officer, payload(), 201)
    second = await upsert(client, officer, payload(), 201)
    async with unit_of_work(factory) as session:
        inbound, _ = await travel_rule.create_inbound(
            session, request_identifier=str(uuid.uuid4()), document=payload_document(), asset="ETH",
            amount="0.25", chain="ethereum", destination=DESTINATION, callback_url="https://peer.example/cb",
            counterparty="peer-vasp", actor="trp:peer-vasp")
    response = await client.get(f"{RECENT}?limit=3", headers=officer.headers)
    assert response.status == 200
    items = (await response.json())["items"]
    assert [item["id"] for item in items] == [str(inbound.id), second["id"], first["id"]]

    drafts = await listing(client, officer, "state=draft&direction=outbound&limit=200")
    assert {first["id"], second["id"]} <= {item["id"] for item in drafts}
    assert all((item["state"], item["direction"]) == ("draft", "outbound") for item in drafts)
    received = await listing(client, officer, "direction=inbound")
    assert received[0]["id"] == str(inbound.id)
    assert (received[0]["state"], received[0]["transfer"]["amount"]) == ("sent", "0.25")
    assert all(item["direction"] == "inbound" for item in received)
    for query in ("state=unknown", "direction=sideways", "limit=0", "limit=1000"):
        assert (await client.get(f"{RECENT}?{query}", headers=officer.headers)).status == 422


async def listing(client, user, query: str) -> list[dict[str, Any]]:
    response = await client.get(f"{RECENT}?{query}", headers=user.headers)
    assert response.status == 200, await response.text()
    return (await response.json())["items"]


def payload_document() -> dict[str, Any]:
    body = payload()
    return {name: body[name] for name in ("originator", "beneficiary", "originating_vasp", "beneficiary_vasp")}


# --- transitions, inbound -------------------------------------------------------------------------

async def test_transitions_are_audited_and_the_customer_is_told(client, login_as, factory) -> None:
    owner = await login_as(client)
    mine = await withdrawal(client, owner)
    created = await upsert(client, owner, payload(transfer={"withdrawal_id": mine["id"]}), 201)
    transfer_id = uuid.UUID(created["id"])
    async with unit_of_work(factory) as session:
        transfer = await travel_rule.get(session, transfer_id, lock=True)
        await travel_rule.transition(session, transfer, "send", actor="system",
                                     data={"wire_ivms101": ivms101.to_wire(travel_rule.document_of(transfer))},
                                     expiry_hours=1)
    async with unit_of_work(factory) as session:
        transfer = await travel_rule.get(session, transfer_id, lock=True)
        await travel_rule.transition(session, transfer, "reject", actor="trp:peer",
                                     data={"reason": "unknown beneficiary"})
        assert (transfer.state, transfer.reason, transfer.decided_by) == ("rejected", "unknown beneficiary", None)
        assert transfer.decided_at is not None and transfer.wire_ivms101["originator"]["originatorPersons"]
    async with unit_of_work(factory) as session:
        transfer = await travel_rule.get(session, transfer_id, lock=True)
        with pytest.raises(InvalidState) as refused:
            await travel_rule.transition(session, transfer, "accept", actor="trp:peer")
        assert refused.value.details["allowed"] == []

    recorded = await events(factory, created["id"])
    assert [(event.type, event.actor) for event in recorded][1:] == [("travel_rule.sent", "system"),
                                                                   ("travel_rule.rejected", "trp:peer")]
    assert recorded[2].data == {"from": "sent", "action": "reject", "reason": "unknown beneficiary"}
    assert audit.verify_chain([audit.as_dict(event) for event in recorded]) == []
    async with factory() as session:
        notes = (await session.scalars(select(Notification).where(
            Notification.user_id == owner.user_id, Notification.type.like("travel_rule.%"))
            .order_by(Notification.seq))).all()
    assert [(note.type, note.data["id"], note.data["state"]) for note in notes] == [
        ("travel_rule.sent", created["id"], "sent"), ("travel_rule.rejected", created["id"], "rejected")]
    assert all("reason" not in note.data for note in notes)  # never a reason: no tipping-off
    # The owner sees the outcome, not the counterparty's reason (no tipping-off).
    again = await upsert(client, owner, payload(external_id=created["external_id"],
                                                transfer={"withdrawal_id": mine["id"]}), 200)
    assert (again["state"], again["reason"], again["counterparty"]) == ("rejected", None, None)
    # The withdrawal is free for a new transfer once its transfer is final.
    assert (await upsert(client, owner, payload(transfer={"withdrawal_id": mine["id"]}), 201))["state"] == "draft"


async def test_an_inbound_transfer_is_recorded_once_per_request_identifier(factory) -> None:
    identifier = str(uuid.uuid4())
    wire = ivms101.to_wire(ivms101.parse(payload_document()))
    async def receive() -> tuple[Any, bool]:
        async with unit_of_work(factory) as session:
            return await travel_rule.create_inbound(
                session, request_identifier=identifier, document=ivms101.from_wire(wire), asset="eth",
                amount=Decimal("1.50"), chain="ethereum", destination=DESTINATION, wire_ivms101=wire,
                callback_url="https://peer.example/cb", counterparty="peer-vasp", actor="trp:peer-vasp")

    results = await asyncio.gather(receive(), receive())
    assert sorted(created for _, created in results) == [False, True]
    assert results[0][0].id == results[1][0].id
    transfer = results[0][0]
    assert (transfer.direction, transfer.state, transfer.asset, transfer.amount) == ("inbound", "sent", "ETH",
                                                                                     15 * 10**17)
    assert transfer.sent_at is not None and transfer.wire_ivms101 == wire
    recorded = await events(factory, transfer.id)
    assert [(event.type, event.actor) for event in recorded] == [("travel_rule.created", "trp:peer-vasp")]
    async with unit_of_work(factory) as session:
        found = await travel_rule.by_request_identifier(session, identifier, "inbound", lock=True)
        await travel_rule.transition(session, found, "accept", actor="trp:policy")
        await travel_rule.record(session, found, actor="trp:peer-vasp", data={"tx_hash": "0x" + "ab" * 32})
    assert [event.type for event in await events(factory, transfer.id)] == [
        "travel_rule.created", "travel_rule.accepted", "travel_rule.recorded"]


# --- expiry ---------------------------------------------------------------------------------------

async def test_the_schedule_runs_the_expiry_hourly(broker, redis_url, namespace, settings) -> None:
    assert await run_schedule_entry(broker, redis_url, namespace, "travel-rule-expiry", "compliance") == 1
    job = build_scheduler(settings, broker).get_job("travel-rule-expiry")
    assert job.trigger.interval == timedelta(hours=1)
    broker.flush_all()


async def test_the_expiry_job_expires_what_is_past_its_deadline(broker, factory, settings, login_as, client) -> None:
    bind_broker(factory, broker)
    officer, owner = await login_as(client, "compliance"), await login_as(client)
    mine = await withdrawal(client, owner)
    actor = travel_rule.Actor(officer.user_id, frozenset({"compliance"}))
    async with unit_of_work(factory) as session:
        draft, _ = await travel_rule.upsert(session, actor, payload(transfer={"withdrawal_id": mine["id"]}),
                                            expiry_hours=72)
        inbound, _ = await travel_rule.create_inbound(
            session, request_identifier=str(uuid.uuid4()), document=payload_document(), asset="ETH", amount="1",
            chain="ethereum", destination=DESTINATION, expiry_hours=72)
        later, _ = await travel_rule.upsert(session, actor, payload(), expiry_hours=100)
    deadline = max(draft.expires_at, inbound.expires_at)
    assert deadline - draft.created_at >= timedelta(hours=72)

    # An hour before the deadline nothing expires; just after it, both do (time is told, not waited for).
    for moment in (deadline - timedelta(hours=1), deadline + timedelta(seconds=1)):
        broker.enqueue(expire_travel_rule.message(moment.isoformat()))
        with using_settings(settings):
            worker = start_worker(broker, {"compliance"}, worker_threads=1)
            try:
                await asyncio.to_thread(broker.join, "compliance", timeout=JOIN_TIMEOUT_MS)
            finally:
                await asyncio.to_thread(worker.stop, timeout=JOIN_TIMEOUT_MS)
        async with factory() as session:
            states = [(await travel_rule.get(session, item.id)).state for item in (draft, inbound, later)]
        assert states == (["draft", "sent", "draft"] if moment < deadline else ["expired", "expired", "draft"])

    async with factory() as session:
        expired = await travel_rule.get(session, draft.id)
        assert expired.reason == "Not sent before its deadline."
        notes = (await session.scalars(select(Notification).where(Notification.user_id == owner.user_id,
                                                                  Notification.type == "travel_rule.expired"))).all()
    assert [note.data["id"] for note in notes] == [str(draft.id)]
    assert [event.type for event in await events(factory, inbound.id)] == ["travel_rule.created", "travel_rule.expired"]


@pytest.fixture
async def low_threshold_client(make_client, travel_settings: Settings):
    return await make_client(travel_settings.model_copy(update={"withdrawal_travel_rule_thresholds": {"ETH": "5"}}))


async def test_a_withdrawal_with_a_travel_address_waits_and_fails_when_its_transfer_expires(
        factory, broker, low_threshold_client, login_as) -> None:
    from compliance.travel_rule import outbound, trp

    bind_broker(factory, broker)  # as in the compliance worker: a failed withdrawal queues the TRP follow-up
    client = low_threshold_client
    owner = await login_as(client)
    travel_address = trp.travel_address("https://vasp.example/inquiry/" + DESTINATION)
    response = await client.post(f"{API}/platform/crypto/withdrawals/request", headers=owner.headers, json={
        "chain": "ethereum", "asset": "ETH", "to_address": DESTINATION, "amount": "6",
        "travel_rule": {"beneficiary_name": "Grace Hopper", "beneficiary_vasp": "Example Exchange Ltd",
                        "travel_address": travel_address}})
    assert response.status == 201, await response.text()
    created = await response.json()
    assert created["state"] == "awaiting_travel_rule"
    async with factory() as session:
        transfer = await travel_rule.for_withdrawal(session, uuid.UUID(created["id"]))
    assert (transfer.state, transfer.travel_address) == ("draft", travel_address)
    assert transfer.send_requested_at is not None  # queued for the compliance worker
    document = travel_rule.document_of(transfer)
    assert document.originator.natural_person.customer_identification == str(owner.user_id)
    assert document.beneficiary.account_numbers == [DESTINATION]
    # Operators cannot approve it while it waits.
    operator = await login_as(client, "operator")
    refused = await client.post(f"{API}/platform/crypto/withdrawals/{created['id']}/sign", headers=operator.headers)
    assert refused.status == 409

    async with unit_of_work(factory) as session:
        await outbound.expire(session, transfer.expires_at + timedelta(seconds=1))
    answer = await client.get(f"{API}/platform/crypto/withdrawals/{created['id']}", headers=owner.headers)
    failed = await answer.json()
    assert failed["state"] == "failed"
    balances = await (await client.get(f"{API}/wallet/balances", headers=owner.headers)).json()
    eth = next(item for item in balances["balances"] if item["currency"] == "ETH")
    assert eth["held"] == "0"


async def test_a_bad_travel_address_or_a_missing_vasp_is_refused_before_anything_is_held(low_threshold_client,
                                                                                       login_as) -> None:
    client = low_threshold_client
    owner = await login_as(client)
    for travel, field in (({"beneficiary_name": "G", "beneficiary_vasp": "X", "travel_address": "ta1234"}, None),
                          ({"beneficiary_name": "G", "travel_address": "https://vasp.example/inquiry/1?t=i"},
                           "travel_rule.beneficiary_vasp")):
        response = await client.post(f"{API}/platform/crypto/withdrawals/request", headers=owner.headers, json={
            "chain": "ethereum", "asset": "ETH", "to_address": DESTINATION, "amount": "6", "travel_rule": travel})
        assert response.status == 422, await response.text()
        body = await response.json()
        assert body["error"]["code"] == ("travel_address_invalid" if field is None else "travel_rule_required")
    listing = await (await client.get(f"{API}/platform/crypto/withdrawals", headers=owner.headers)).json()
    assert listing["items"] == []


# --- where a Travel Address may point, and what a customer sees -----------------------------------

PRIVATE_HOSTS = ("127.0.0.1", "10.1.2.3", "172.16.0.9", "192.168.1.20", "169.254.169.254", "0.0.0.0", "[::1]",
                 "[fe80::1]", "[fd00::5]", "[::ffff:127.0.0.1]", "localhost", "LocalHost.", "api.localhost",
                 "2130706433", "127.1", "0x7f.0.0.1")


async def refused_code(client, user, body: dict[str, Any], path: str = UPSERT) -> tuple[int, str]:
    response = await client.post(path, json=body, headers=user.headers)
    return response.status, (await response.json()).get("error", {}).get("code", "")


async def test_a_travel_address_at_a_private_address_is_refused(low_threshold_client, login_as) -> None:
    from compliance.travel_rule import trp

    client = low_threshold_client
    officer, owner = await login_as(client, "compliance"), await login_as(client)
    for host in PRIVATE_HOSTS:
        url = f"https://{host}:8443/inquiry/{DESTINATION}"
        for travel_address in (url, trp.travel_address(url)):  # TRP allows a plain https URL too
            assert await refused_code(client, officer, payload(travel_address=travel_address)) == (
                422, "travel_address_private"), travel_address
    for host in ("127.0.0.1", "[fe80::1]", "localhost"):
        body = {"chain": "ethereum", "asset": "ETH", "to_address": DESTINATION, "amount": "6", "travel_rule": {
            "beneficiary_name": "Grace Hopper", "beneficiary_vasp": "Example Exchange Ltd",
            "travel_address": trp.travel_address(f"https://{host}:8443/inquiry/{DESTINATION}")}}
        assert await refused_code(client, owner, body, f"{API}/platform/crypto/withdrawals/request") == (
            422, "travel_address_private"), host
    listing = await (await client.get(f"{API}/platform/crypto/withdrawals", headers=owner.headers)).json()
    assert listing["items"] == []  # refused before anything was held
    # A public name is not resolved here: the compliance worker checks it when it connects.
    assert (await upsert(client, officer, payload(travel_address="https://vasp.example/inquiry/1"), 201))["id"]


async def test_a_private_address_is_accepted_for_a_vasp_in_the_directory(make_client, travel_settings,
                                                                           login_as) -> None:
    client = await make_client(travel_settings.model_copy(update={"travel_rule_vasp_directory": [
        VaspDirectoryEntry(name="partner-vasp", legal_name="Partner VASP", url="https://10.1.2.3:8443")]}))
    officer = await login_as(client, "compliance")
    created = await upsert(client, officer, payload(travel_address="https://10.1.2.3:8443/inquiry/1"), 201)
    assert created["travel_address"] == "https://10.1.2.3:8443/inquiry/1"
    # Only that VASP: another port on the same host, or another private host, is still refused.
    for address in ("https://10.1.2.3:9443/inquiry/1", "https://10.1.2.4:8443/inquiry/1"):
        assert await refused_code(client, officer, payload(travel_address=address)) == (422, "travel_address_private")


async def test_a_customer_never_sees_the_request_identifier(low_threshold_client, login_as, factory) -> None:
    client = low_threshold_client
    owner, officer = await login_as(client), await login_as(client, "compliance")
    waiting = await (await client.post(f"{API}/platform/crypto/withdrawals/request", headers=owner.headers, json={
        "chain": "ethereum", "asset": "ETH", "to_address": DESTINATION, "amount": "6", "travel_rule": {
            "beneficiary_name": "Grace Hopper", "beneficiary_vasp": "Example Exchange Ltd",
            "travel_address": "https://vasp.example/inquiry/1"}})).json()
    assert waiting["state"] == "awaiting_travel_rule", waiting
    async with unit_of_work(factory) as session:
        transfer = await travel_rule.for_withdrawal(session, uuid.UUID(waiting["id"]), lock=True)
        identifier = transfer.request_identifier
        # As an approval records it: the counterparty's callback names the request identifier.
        await travel_rule.record(session, transfer, actor="test",
                                 data={"callback_url": f"https://vasp.example/confirm/{identifier}"})

    small = await withdrawal(client, owner, "1")
    filed = await client.post(UPSERT, json=payload(transfer={"withdrawal_id": small["id"]}), headers=owner.headers)
    answers = [filed,
               await client.get(f"{API}/platform/crypto/withdrawals/{waiting['id']}", headers=owner.headers),
               await client.get(f"{API}/platform/crypto/withdrawals", headers=owner.headers)]
    for answer in answers:
        text = await answer.text()
        assert answer.status in (200, 201), text
        assert identifier not in text
    mine = await filed.json()
    assert (mine["request_identifier"], mine["callback_url"]) == (None, None)
    async with factory() as session:
        own_identifier = (await travel_rule.get(session, uuid.UUID(mine["id"]))).request_identifier
    assert own_identifier not in await filed.text()
    # Staff see it: they need it to follow a transfer with the counterparty.
    seen = await upsert(client, officer, payload(external_id=mine["external_id"],
                                                 transfer={"withdrawal_id": small["id"]}), 200)
    assert seen["request_identifier"] == own_identifier
