"""KYC cases and transaction reviews can be rebuilt from their audit events, exactly."""

from __future__ import annotations

import uuid
from datetime import date
from functools import reduce

from compliance.kyc import service as kyc
from compliance.review import service as review
from compliance.kyc.projection import reduce_kyc_case, stored_kyc_case
from compliance.review.projection import reduce_transaction_review, stored_transaction_review
from core import audit
from core.db import unit_of_work
from custody.ledger import service as ledger
from custody.ledger.service import AccountRef


async def rebuilt(factory, aggregate_type, aggregate_id, reducer, loader):
    async with factory() as session:
        events = [audit.as_dict(event) for event in await audit.events_of(session, aggregate_type, aggregate_id)]
        return reduce(reducer, events, None), await loader(session, str(aggregate_id))


async def test_kyc_case_folds_to_its_row(client, login_as, factory) -> None:
    user, officer = (await login_as(client)).user_id, (await login_as(client, "compliance")).user_id
    address = {"street_name": "Main St", "building_number": "1", "post_code": "10001", "town_name": "NYC",
               "country": "US"}
    submission = kyc.Submission("Grace", f"Hopper-{uuid.uuid4().hex[:6]}", date(1906, 12, 9), "US", address)
    steps = [lambda s: kyc.submit(s, user, submission),
             lambda s: kyc.decide(s, user, "needs_info", "blurry", officer),
             lambda s: kyc.submit(s, user, submission),
             lambda s: kyc.decide(s, user, "approved", "ok", officer, 2)]
    for step in steps:
        async with unit_of_work(factory) as session:
            await step(session)
        folded, stored = await rebuilt(factory, "kyc_case", user, reduce_kyc_case, stored_kyc_case)
        assert folded == stored


async def test_transaction_review_folds_to_its_row(client, login_as, factory) -> None:
    user, officer = (await login_as(client)).user_id, (await login_as(client, "compliance")).user_id
    async with unit_of_work(factory) as session:
        posted = await ledger.move(session, reference=f"test:{uuid.uuid4()}", type="deposit",
                                   source=AccountRef.system("chain_deposits"), destination=AccountRef.user(user),
                                   currency="USD", amount=100)
    steps = [lambda s: review.flag(s, posted.id, "why", officer),
             lambda s: review.resolve(s, posted.id, "cleared", "fine", officer),
             lambda s: review.flag(s, posted.id, "again", None)]
    for step in steps:
        async with unit_of_work(factory) as session:
            await step(session)
        folded, stored = await rebuilt(factory, "transaction_review", posted.id, reduce_transaction_review,
                                       stored_transaction_review)
        assert folded == stored


async def test_travel_rule_transfer_folds_to_its_row(client, login_as, factory) -> None:
    from compliance.travel_rule.projection import reduce_travel_rule, stored_travel_rule
    from compliance.travel_rule import service as travel_rule

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
