from __future__ import annotations

import uuid

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.exc import DBAPIError, IntegrityError

from core import audit
from core.db import unit_of_work
from core.errors import InsufficientFunds, InvalidInput
from custody import ledger
from custody.ledger.models import LedgerAccount, LedgerPosting, LedgerTransfer
from tests.integration.custody.ledger.conftest import balance_of

User = ledger.AccountRef.user
System = ledger.AccountRef.system


async def postings_of(session, transfer_id):
    rows = await session.execute(select(LedgerPosting.currency, LedgerPosting.amount)
                                 .where(LedgerPosting.transfer_id == transfer_id))
    return sorted((row.currency, row.amount) for row in rows)


async def test_a_transfer_posts_legs_summing_to_zero_and_moves_balances(sessions, make_user_id, fund):
    alice, bob = await make_user_id(), await make_user_id()
    await fund(alice, "USD", 10_000)
    async with unit_of_work(sessions) as session:
        posted = await ledger.move(session, reference=f"t:{uuid.uuid4()}", type="p2p", source=User(alice),
                                   destination=User(bob), currency="USD", amount=2_550,
                                   reference_kind="escrow", reference_id="e-1")
    async with sessions() as session:
        assert await postings_of(session, posted.id) == [("USD", -2_550), ("USD", 2_550)]
    assert not posted.replayed
    assert (posted.type, posted.reference_kind, posted.reference_id) == ("p2p", "escrow", "e-1")
    assert await balance_of(sessions, alice, "USD") == (7_450, 0)
    assert await balance_of(sessions, bob, "USD") == (2_550, 0)


async def test_a_transfer_may_span_currencies_when_each_balances(sessions, make_user_id, fund):
    alice = await make_user_id()
    await fund(alice, "USD", 500)
    wei = 3 * 10**17
    async with unit_of_work(sessions) as session:
        posted = await ledger.transfer(session, reference=f"fx:{uuid.uuid4()}", type="exchange", legs=[
            ledger.Leg(User(alice), "USD", -500), ledger.Leg(System("exchange"), "USD", 500),
            ledger.Leg(System("exchange"), "ETH", -wei), ledger.Leg(User(alice), "ETH", wei),
        ])
    async with sessions() as session:
        assert await postings_of(session, posted.id) == [("ETH", -wei), ("ETH", wei), ("USD", -500), ("USD", 500)]
    assert await balance_of(sessions, alice, "ETH") == (wei, 0)


@pytest.mark.parametrize(("legs", "code"), [
    ([("a", "USD", -100), ("b", "USD", 99)], "unbalanced_transfer"),
    ([("a", "USD", -100), ("b", "ETH", 100)], "unbalanced_transfer"),
    ([("a", "USD", -100), ("a", "USD", 100)], "empty_transfer"),
    ([], "empty_transfer"),
    ([("a", "XYZ", -1), ("b", "XYZ", 1)], "unknown_currency"),
    ([("a", "USD", -1.5), ("b", "USD", 1.5)], "invalid_amount"),
    ([("a", "USD", -(2**256)), ("b", "USD", 2**256)], "invalid_amount"),
])
async def test_malformed_transfers_are_refused(sessions, make_user_id, legs, code):
    users = {"a": await make_user_id(), "b": await make_user_id()}
    async with sessions() as session:
        with pytest.raises(InvalidInput) as refused:
            await ledger.transfer(session, reference=f"bad:{uuid.uuid4()}", type="p2p",
                                  legs=[ledger.Leg(User(users[who]), cur, amount) for who, cur, amount in legs])
    assert refused.value.code == code


async def test_posting_the_same_reference_twice_is_a_replay_without_effect(sessions, make_user_id, fund):
    alice, bob = await make_user_id(), await make_user_id()
    await fund(alice, "USD", 1_000)
    reference = f"deposit:{uuid.uuid4()}"

    async def post():
        async with unit_of_work(sessions) as session:
            return await ledger.move(session, reference=reference, type="p2p", source=User(alice),
                                     destination=User(bob), currency="USD", amount=600, tx_hash="0xabc")

    first, second = await post(), await post()
    assert second.replayed and not first.replayed
    assert second.id == first.id and second.created_at == first.created_at
    assert await balance_of(sessions, alice, "USD") == (400, 0)
    # The money has moved on since: a retry is still a replay, not "insufficient funds".
    assert (await post()).id == first.id
    async with sessions() as session:
        assert await session.scalar(select(func.count()).where(LedgerTransfer.reference == reference)) == 1


@pytest.mark.parametrize("change", ["amount", "destination", "type", "tx_hash", "reference_id"])
async def test_the_same_reference_with_other_content_is_a_conflict(sessions, make_user_id, fund, change):
    alice, bob = await make_user_id(), await make_user_id()
    await fund(alice, "USD", 1_000)
    reference = f"deposit:{uuid.uuid4()}"
    original = {"amount": 100, "destination": User(bob), "type": "p2p", "tx_hash": "0xabc", "reference_id": "1"}
    other = {"amount": 101, "destination": System("fees"), "type": "fee", "tx_hash": "0xdef", "reference_id": "2"}
    async with unit_of_work(sessions) as session:
        await ledger.move(session, reference=reference, source=User(alice), currency="USD", reference_kind="k",
                          **original)
    async with sessions() as session:
        with pytest.raises(ledger.ReferenceConflict) as conflict:
            await ledger.move(session, reference=reference, source=User(alice), currency="USD", reference_kind="k",
                              **{**original, change: other[change]})
    assert (conflict.value.status, conflict.value.code) == (409, "reference_conflict")
    assert await balance_of(sessions, alice, "USD") == (900, 0)


async def test_insufficient_funds_leaves_nothing_written(sessions, make_user_id, fund):
    alice, newcomer = await make_user_id(), await make_user_id()
    await fund(alice, "USD", 1_000)
    reference = f"too-much:{uuid.uuid4()}"
    async with sessions() as session:
        with pytest.raises(InsufficientFunds) as refused:
            await ledger.move(session, reference=reference, type="p2p", source=User(alice),
                              destination=User(newcomer), currency="USD", amount=1_001)
        # Even a caller that goes on to commit finds nothing of the refused transfer.
        await session.commit()
    assert (refused.value.status, refused.value.code) == (422, "insufficient_funds")
    assert refused.value.details == {"currency": "USD", "account": "available", "balance": "10.00",
                                     "required": "10.01"}
    async with sessions() as session:
        assert await session.scalar(select(func.count()).where(LedgerTransfer.reference == reference)) == 0
    assert await balance_of(sessions, alice, "USD") == (1_000, 0)
    # Nor is an empty account left behind, for the refused credit or for a debit of nothing.
    async with sessions() as session:
        with pytest.raises(InsufficientFunds):
            await ledger.move(session, reference=f"nothing:{uuid.uuid4()}", type="p2p", source=User(newcomer),
                              destination=User(alice), currency="ETH", amount=1)
        await session.commit()
    async with sessions() as session:
        accounts = await session.scalar(select(func.count()).where(LedgerAccount.user_id == newcomer))
    assert accounts == 0


async def test_held_balances_move_only_through_holds(sessions, make_user_id, fund):
    alice = await make_user_id()
    await fund(alice, "USD", 100)
    async with sessions() as session:
        with pytest.raises(InvalidInput) as refused:
            await ledger.move(session, reference=f"sneaky:{uuid.uuid4()}", type="p2p", source=User(alice),
                              destination=User(alice, ledger.HELD), currency="USD", amount=50)
    assert refused.value.code == "held_account_reserved"


@pytest.mark.parametrize("account", [ledger.AccountRef("savings", uuid.UUID("5b0c3a52-9a51-4d3c-8e7e-1f0d2a6b9c11")), ledger.AccountRef("held", None),
                                     ledger.AccountRef("Fees!", None), ledger.AccountRef("", None)])
async def test_accounts_that_cannot_exist_are_refused(sessions, make_user_id, fund, account):
    alice = await make_user_id()
    await fund(alice, "USD", 100)
    async with sessions() as session:
        with pytest.raises(InvalidInput) as refused:
            await ledger.move(session, reference=f"odd:{uuid.uuid4()}", type="p2p", source=User(alice),
                              destination=account, currency="USD", amount=1)
    assert refused.value.code == "invalid_account"


# --- what the database refuses even if the service had a bug ----------------------------------

async def test_the_database_refuses_a_negative_user_balance(sessions, make_user_id, fund):
    alice = await make_user_id()
    await fund(alice, "USD", 100)
    async with sessions() as session:
        with pytest.raises(IntegrityError, match="user_balance_not_negative"):
            await session.execute(text("UPDATE ledger_accounts SET balance = -1 WHERE user_id = :id"), {"id": alice})


async def test_the_database_refuses_an_unbalanced_transfer_at_commit(sessions, make_user_id, fund):
    alice = await make_user_id()
    posted = await fund(alice, "USD", 100)
    async with sessions() as session:
        account_id = await session.scalar(select(LedgerAccount.id).where(LedgerAccount.user_id == alice))
        transfer_id = uuid.uuid4()
        await session.execute(text(
            "INSERT INTO ledger_transfers (id, reference, type) VALUES (:id, :ref, 'forged')"
        ), {"id": transfer_id, "ref": f"forged:{transfer_id}"})
        await session.execute(text(
            "INSERT INTO ledger_postings (id, transfer_id, account_id, currency, amount, created_at)"
            " VALUES (gen_random_uuid(), :t, :a, 'USD', 1000000, now())"
        ), {"t": transfer_id, "a": account_id})
        with pytest.raises(IntegrityError, match="does not balance in USD"):
            await session.commit()
    assert posted.id  # the genuine transfer stands


async def test_transfers_and_postings_are_append_only(sessions, make_user_id, fund):
    alice = await make_user_id()
    posted = await fund(alice, "USD", 100)
    for statement in ("UPDATE ledger_postings SET amount = amount * 2 WHERE transfer_id = :id",
                      "DELETE FROM ledger_postings WHERE transfer_id = :id",
                      "UPDATE ledger_transfers SET type = 'other' WHERE id = :id",
                      "DELETE FROM ledger_transfers WHERE id = :id"):
        async with sessions() as session:
            with pytest.raises(DBAPIError, match="append-only"):
                await session.execute(text(statement), {"id": posted.id})


async def test_a_posting_cannot_name_another_currency_than_its_account(sessions, make_user_id, fund):
    alice = await make_user_id()
    await fund(alice, "USD", 100)
    async with sessions() as session:
        account_id = await session.scalar(select(LedgerAccount.id).where(LedgerAccount.user_id == alice))
        transfer_id = uuid.uuid4()
        await session.execute(text("INSERT INTO ledger_transfers (id, reference, type) VALUES (:id, :ref, 'x')"),
                              {"id": transfer_id, "ref": f"x:{transfer_id}"})
        with pytest.raises(IntegrityError, match="fk_ledger_postings_account_currency"):
            await session.execute(text(
                "INSERT INTO ledger_postings (id, transfer_id, account_id, currency, amount, created_at)"
                " VALUES (gen_random_uuid(), :t, :a, 'ETH', 5, now())"
            ), {"t": transfer_id, "a": account_id})


# --- reads and the sandbox -----------------------------------------------------------------------

async def test_balances_list_touched_currencies_and_usd_always(sessions, make_user_id, fund):
    alice = await make_user_id()
    async with sessions() as session:
        [usd] = await ledger.balances(session, alice)
    assert (usd.currency.code, usd.available, usd.held, usd.currency.format(usd.total)) == ("USD", 0, 0, "0.00")
    await fund(alice, "USDC", 1_500_000)
    await fund(alice, "ETH", 5 * 10**17)
    async with unit_of_work(sessions) as session:
        await ledger.hold(session, f"h:{uuid.uuid4()}", alice, "USDC", 500_000)
    async with sessions() as session:
        rows = await ledger.balances(session, alice)
    assert [(row.currency.code, row.currency.format(row.available), row.currency.format(row.held),
             row.currency.format(row.total)) for row in rows] == [
        ("ETH", "0.5", "0", "0.5"), ("USD", "0.00", "0.00", "0.00"), ("USDC", "1", "0.5", "1.5")]


async def test_sandbox_credit_posts_once_per_currency_with_an_audit_event(sessions, make_user_id):
    alice = await make_user_id()
    async with unit_of_work(sessions) as session:
        first = await ledger.sandbox_credit(session, alice, "USD:10000.00, ETH:1.5")
    async with unit_of_work(sessions) as session:
        again = await ledger.sandbox_credit(session, alice, "USD:10000.00,ETH:1.5")
    assert [t.reference for t in first] == [f"sandbox:{alice}:USD", f"sandbox:{alice}:ETH"]
    assert [t.replayed for t in first] == [False, False] and [t.replayed for t in again] == [True, True]
    assert {t.type for t in first} == {"sandbox_credit"}
    assert await balance_of(sessions, alice, "USD") == (1_000_000, 0)
    assert await balance_of(sessions, alice, "ETH") == (15 * 10**17, 0)
    async with sessions() as session:
        events = await audit.events_of(session, "user", alice)
    assert [(event.type, event.data) for event in events] == [
        ("ledger.sandbox_credited", {"credits": [{"currency": "USD", "amount": "10000.00"},
                                                 {"currency": "ETH", "amount": "1.5"}]})]


@pytest.mark.parametrize(("spec", "code"), [
    ("USD", "invalid_sandbox_credit"), ("USD:1,USD:2", "invalid_sandbox_credit"), (":5", "invalid_sandbox_credit"),
    ("XYZ:1", "unknown_currency"), ("USD:1.001", "invalid_amount"), ("USD:-5", "invalid_amount"),
    ("USD:0", "invalid_amount"),
])
async def test_sandbox_credit_refuses_a_malformed_spec(sessions, make_user_id, spec, code):
    alice = await make_user_id()
    async with sessions() as session:
        with pytest.raises(InvalidInput) as refused:
            await ledger.sandbox_credit(session, alice, spec)
    assert refused.value.code == code
