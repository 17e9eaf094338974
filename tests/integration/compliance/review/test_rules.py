"""Automatic rules over the real ledger: large transactions and structuring are flagged once."""

from __future__ import annotations

import uuid

from sqlalchemy import select

from compliance.review import service as review, rules
from compliance.review.models import TransactionReview
from core.db import unit_of_work
from core.time import utcnow
from custody.ledger import service as ledger
from custody.ledger.service import AccountRef
from tests.factories import credit_user

ETH, USDC = 10**18, 10**6


async def deposit(factory, user, currency, amount, tx_hash: str | None = None) -> uuid.UUID:
    return (await credit_user(factory, user, currency, amount, tx_hash=tx_hash)).id


async def sweep(factory, name, start):
    async with unit_of_work(factory) as session:
        return await rules.sweep(session, utcnow(), jurisdiction="FATF", settle_seconds=0, jurisdictions_file=None,
                                 start=start, name=name)


async def test_large_and_structuring_are_flagged_once(client, login_as, factory) -> None:
    start, name = utcnow(), f"test-{uuid.uuid4().hex[:20]}"  # sequential tests: nothing else posts
    whale, smurf, ordinary = [(await login_as(client)).user_id for _ in range(3)]
    large = await deposit(factory, whale, "ETH", 6 * ETH)  # 18,000 USD >= 15,000 (FATF R.10 level)
    already = await deposit(factory, whale, "ETH", 5 * ETH)  # 15,000: large, but an officer flagged it first
    async with unit_of_work(factory) as session:
        await review.flag(session, already, "seen by an officer", None)
    near = [await deposit(factory, smurf, "USDC", amount * USDC) for amount in (14_000, 13_600, 14_999)]
    await deposit(factory, smurf, "USDC", 100 * USDC)  # small: not part of the pattern
    single = await deposit(factory, ordinary, "USDC", 13_600 * USDC)  # one near-threshold movement is not a pattern

    findings = await sweep(factory, name, start)
    # The near-threshold deposits that are not (yet) structuring came without Travel Rule data.
    assert {(f.transfer_id, f.rule) for f in findings} == {
        (large, "large_transaction"), (already, "large_transaction"), (near[2], "structuring"),
        (near[0], "travel_rule_missing"), (near[1], "travel_rule_missing"), (single, "travel_rule_missing")}
    async with factory() as session:
        reviews = {r.transfer_id: r for r in (await session.scalars(select(TransactionReview).where(
            TransactionReview.transfer_id.in_([large, already, *near])))).all()}
    assert set(reviews) == {large, already, *near}
    assert reviews[large].flagged_by is None and reviews[large].reason.startswith("rule large_transaction: 6 ETH")
    assert reviews[already].reason == "seen by an officer"  # not flagged a second time
    assert "3 in movements" in reviews[near[2]].reason

    assert await sweep(factory, name, start) == []  # the cursor moved past them
    later = await deposit(factory, smurf, "USDC", 14_500 * USDC)  # a 4th near-threshold movement within 24 h
    assert [(f.transfer_id, f.rule) for f in await sweep(factory, name, start)] == [(later, "structuring")]


async def test_a_deposit_above_the_travel_rule_threshold_needs_originator_data(client, login_as, factory) -> None:
    from compliance.travel_rule import service as travel_rule

    start, name = utcnow(), f"test-{uuid.uuid4().hex[:20]}"
    user = (await login_as(client)).user_id
    covered_hash, bare_hash = "0x" + uuid.uuid4().hex * 2, "0x" + uuid.uuid4().hex * 2
    covered = await deposit(factory, user, "USDC", 2_000 * USDC, covered_hash)  # >= 1,000 USD (FATF R.16)
    bare = await deposit(factory, user, "USDC", 2_000 * USDC, bare_hash)
    small = await deposit(factory, user, "USDC", 999 * USDC, "0x" + uuid.uuid4().hex * 2)
    async with unit_of_work(factory) as session:  # a counterparty VASP sent originator data for the first
        transfer, _ = await travel_rule.create_inbound(
            session, request_identifier=str(uuid.uuid4()), asset="USDC", amount="2000", chain="ethereum",
            destination="0x70997970C51812dc3A010C7d01b50e0d17dc79C8", tx_hash=covered_hash, document={
                "originator": {"natural_person": {"name": {"name_identifiers": [{"primary_identifier": "Lovelace"}]},
                                                  "customer_identification": "c-1"}},
                "beneficiary": {"natural_person": {"name": {"name_identifiers": [{"primary_identifier": "Hopper"}]}}},
                "originating_vasp": {"legal_person": {"name": "Alpha VASP"}},
                "beneficiary_vasp": {"legal_person": {"name": "VirtuOZ"}}})
        await travel_rule.transition(session, transfer, "accept", actor="test")
    findings = await sweep(factory, name, start)
    assert [(f.transfer_id, f.rule) for f in findings] == [(bare, "travel_rule_missing")]
    assert covered != small and "without originator data" in findings[0].reason


async def test_a_deposit_from_a_sanctioned_address_is_flagged_and_freezes_withdrawals(client, login_as,
                                                                                       factory) -> None:
    import secrets

    from sqlalchemy import text

    from compliance.screening import service as screening
    from custody.freezes import withdrawals_frozen

    start, name = utcnow(), f"test-{uuid.uuid4().hex[:20]}"  # sequential tests: nothing else posts
    user = (await login_as(client)).user_id
    listed = "0x" + secrets.token_hex(20)
    async with unit_of_work(factory) as session:
        await screening.load(session, f"{listed.upper().replace('0X', '0x')}\n".encode(), f"rules-{listed}.txt")
        deposit_id = uuid.uuid4()
        await session.execute(text(
            "INSERT INTO deposits (id, chain, tx_hash, log_index, block_number, block_hash, from_address, to_address,"
            " user_id, asset, amount, state, required_confirmations, source) VALUES (:id, 'ethereum', :tx, 0, 1,"
            " :block, :sender, :to, :user, 'USDC', 5000000, 'seen', 3, 'scanner')"),
            {"id": deposit_id, "tx": "0x" + secrets.token_hex(32), "block": "0x" + secrets.token_hex(32),
             "sender": listed, "to": "0x" + secrets.token_hex(20), "user": user})
        posted = await ledger.move(session, reference=f"test:{uuid.uuid4()}", type="deposit",
                                   source=AccountRef.system("chain_deposits"), destination=AccountRef.user(user),
                                   currency="USDC", amount=5 * USDC, reference_kind="deposit",
                                   reference_id=str(deposit_id))
    assert not await _frozen(factory, user, withdrawals_frozen)
    findings = await sweep(factory, name, start)
    assert [(f.transfer_id, f.rule) for f in findings] == [(posted.id, "sanctioned_counterparty")]
    assert listed in findings[0].reason
    assert await _frozen(factory, user, withdrawals_frozen)
    async with factory() as session:
        flagged = await session.get(TransactionReview, posted.id)
    assert flagged.state == "flagged" and flagged.reason == findings[0].reason


async def _frozen(factory, user, check) -> bool:
    async with factory() as session:
        return await check(session, user)
