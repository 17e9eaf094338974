"""Travel Rule transfers can be rebuilt from their audit events, exactly."""

from __future__ import annotations

import uuid

from compliance.travel_rule import service as travel_rule
from compliance.travel_rule.projection import reduce_travel_rule, stored_travel_rule
from core.db import unit_of_work
from tests.integration.compliance.conftest import rebuilt


async def test_travel_rule_transfer_folds_to_its_row(client, login_as, factory) -> None:
    officer = (await login_as(client, "compliance")).user_id
    actor = travel_rule.Actor(officer, frozenset({"compliance"}))
    destination = "0x70997970C51812dc3A010C7d01b50e0d17dc79C8"
    body = {
        "external_id": f"ext-{uuid.uuid4().hex}",
        "originator": {"natural_person": {"name": {"name_identifiers": [{"primary_identifier": "Lovelace"}]},
                                          "customer_identification": "c-1"}},
        "beneficiary": {"natural_person": {"name": {"name_identifiers": [{"primary_identifier": "Hopper"}]}},
                        "account_numbers": [destination]},
        "originating_vasp": {"legal_person": {"name": "VirtuOZ"}},
        "beneficiary_vasp": {"legal_person": {"name": "Example Exchange Ltd"}},
        "transfer": {"asset": "ETH", "amount": "1.5", "chain": "ethereum", "destination": destination},
    }
    holder: dict = {}

    async def create(session):
        holder["transfer"], _ = await travel_rule.upsert(session, actor, body)

    async def update(session):
        await travel_rule.upsert(session, actor, {**body, "transfer": {**body["transfer"], "amount": "2"},
                                                  "travel_address": "https://vasp.example/inquiry/1?t=i"})

    async def step(action, data=None):
        async def run(session):
            transfer = await travel_rule.get(session, holder["transfer"].id, lock=True)
            await travel_rule.transition(session, transfer, action, actor="test", data=data)
        return run

    async def record(session):
        transfer = await travel_rule.get(session, holder["transfer"].id, lock=True)
        await travel_rule.record(session, transfer, actor="test", data={"tx_hash": "0x" + "ab" * 32})

    steps = [create, update, await step("send", {"counterparty": "peer"}),
             await step("accept", {"callback_url": "https://vasp.example/confirm/1"}), record]
    for action in steps:
        async with unit_of_work(factory) as session:
            await action(session)
        folded, stored = await rebuilt(factory, "travel_rule", holder["transfer"].id, reduce_travel_rule,
                                       stored_travel_rule)
        assert folded == stored
    assert folded["state"] == "accepted" and folded["amount"] == "2" and folded["tx_hash"].startswith("0xab")
