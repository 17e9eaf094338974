"""`virtuoz ledger verify`: OK on consistent books; names the account whose balance was tampered
with, and the withdrawal whose hold no longer matches its state (a finding: its name and ids).

Each test has a database of its own: the worker's shared one holds other tests' deliberately
partial rows (a withdrawal made `confirmed` with its hold still pending, credits from the chain
deposits account with no deposit), which the command rightly reports.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import uuid

import pytest
from sqlalchemy import text

from core.db import create_engine, session_factory, unit_of_work
from core.migrate import upgrade
from custody import ledger
from custody.books.cli import add_commands
from tests.factories import make_funded_user, make_withdrawal


def parse(argv):
    root = argparse.ArgumentParser(prog="virtuoz")
    add_commands(root.add_subparsers(dest="command", required=True))
    return root.parse_args(argv)


def fresh_database(postgres, name: str) -> str:
    postgres.create_database(name)
    url = postgres.url(name)
    upgrade(url)
    return url


def verify(settings, url: str) -> int:
    args = parse(["ledger", "verify"])
    return args.run(settings.model_copy(update={"database_url": url}), args)


def test_ledger_verify_is_registered_as_a_command():
    args = parse(["ledger", "verify"])
    assert args.process == "ledger" and callable(args.run)


async def _books_with_a_hold(url: str) -> None:
    engine = create_engine(url)
    try:
        sessions = session_factory(engine)
        user_id = await make_funded_user(sessions, "USD:100.00", tag="verified")
        async with unit_of_work(sessions) as session:
            await ledger.hold(session, f"escrow:{uuid.uuid4()}", user_id, "USD", 2_500)
    finally:
        await engine.dispose()


def test_ledger_verify_reports_ok_on_consistent_books(postgres, settings, capsys):
    url = fresh_database(postgres, "virtuoz_ledger_consistent")
    asyncio.run(_books_with_a_hold(url))
    assert verify(settings, url) == 0
    assert re.fullmatch(r"ledger OK \(3 accounts, 2 transfers, 0 withdrawals, 0 deposits\)\n",
                        capsys.readouterr().out)


async def _books_with_a_tampered_balance(url: str, drift: int) -> tuple[uuid.UUID, uuid.UUID]:
    engine = create_engine(url)
    sessions = session_factory(engine)
    try:
        user_id = await make_funded_user(sessions, "USD:100.00", tag="tampered")
        async with unit_of_work(sessions) as session:
            await ledger.hold(session, f"escrow:{uuid.uuid4()}", user_id, "USD", 2_500)
        async with unit_of_work(sessions) as session:
            assert await ledger.verify_ledger(session) == []
            # What a bad manual fix would do: a balance changed without a posting.
            account_id = (await session.execute(text(
                "UPDATE ledger_accounts SET balance = balance + :drift WHERE user_id = :id AND kind = 'available'"
                " RETURNING id"), {"id": user_id, "drift": drift})).scalar_one()
    finally:
        await engine.dispose()
    return user_id, account_id


@pytest.mark.parametrize(("drift", "balance", "postings"), [
    (1, "7501", "7500"),
    # Whole minor units however large: never 1.000E+21 (asyncpg's Decimal for such a NUMERIC).
    (10**21 - 7500, "1000000000000000000000", "7500"),
])
def test_ledger_verify_names_a_tampered_account(postgres, settings, capsys, drift, balance, postings):
    url = fresh_database(postgres, f"virtuoz_ledger_tampered_{len(balance)}")
    user_id, account_id = asyncio.run(_books_with_a_tampered_balance(url, drift))
    assert verify(settings, url) == 1
    out = capsys.readouterr().out
    assert out.startswith("ledger: 1 problem(s) in 3 accounts, 2 transfers, 0 withdrawals, 0 deposits:\n")
    assert f"account {account_id} (user {user_id} available USD): balance {balance} but its postings sum to {postings}" in out


async def _a_confirmed_withdrawal_with_its_hold_pending(url: str) -> tuple[uuid.UUID, uuid.UUID]:
    engine = create_engine(url)
    try:
        sessions = session_factory(engine)
        user_id = await make_funded_user(sessions, "ETH:1", tag="drifted")
        withdrawal = await make_withdrawal(sessions, user_id, "ethereum", amount=10**17, fee=10**15)
        async with unit_of_work(sessions) as session:
            # What a bad manual fix would do: the state moved on, the money did not.
            await session.execute(text("UPDATE withdrawals SET state = 'confirmed' WHERE id = :id"),
                                  {"id": withdrawal.id})
    finally:
        await engine.dispose()
    return withdrawal.id, withdrawal.hold_id


def test_ledger_verify_names_a_withdrawal_whose_hold_does_not_match_its_state(postgres, settings, capsys):
    url = fresh_database(postgres, "virtuoz_ledger_drifted")
    withdrawal_id, hold_id = asyncio.run(_a_confirmed_withdrawal_with_its_hold_pending(url))
    assert verify(settings, url) == 1
    out = capsys.readouterr().out
    assert out.startswith("ledger: 1 problem(s) in 3 accounts, 2 transfers, 1 withdrawals, 0 deposits:\n")
    assert (f"  - withdrawal_confirmed_hold_not_posted withdrawal={withdrawal_id} hold={hold_id}: confirmed, "
            "amount 100000000000000000 fee 1000000000000000, but its hold is pending\n") in out
