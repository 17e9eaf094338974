"""`virtuoz ledger verify`: OK on consistent books; names the account whose balance was tampered with.

The tampering happens in a database of its own: the worker's shared database must stay sound.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import uuid

from sqlalchemy import text

from core.db import create_engine, session_factory, unit_of_work
from core.migrate import upgrade
from custody import ledger
from custody.ledger.cli import add_commands
from tests.factories import make_funded_user

DATABASE = "virtuoz_ledger_tampered"


def parse(argv):
    root = argparse.ArgumentParser(prog="virtuoz")
    add_commands(root.add_subparsers(dest="command", required=True))
    return root.parse_args(argv)


def test_ledger_verify_is_registered_as_a_command():
    args = parse(["ledger", "verify"])
    assert args.process == "ledger" and callable(args.run)


def test_ledger_verify_reports_ok_on_consistent_books(settings, capsys):
    args = parse(["ledger", "verify"])
    assert args.run(settings, args) == 0
    assert re.fullmatch(r"ledger OK \(\d+ accounts, \d+ transfers\)\n", capsys.readouterr().out)


async def _books_with_a_tampered_balance(url: str) -> tuple[uuid.UUID, uuid.UUID]:
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
                "UPDATE ledger_accounts SET balance = balance + 1 WHERE user_id = :id AND kind = 'available'"
                " RETURNING id"), {"id": user_id})).scalar_one()
    finally:
        await engine.dispose()
    return user_id, account_id


def test_ledger_verify_names_a_tampered_account(postgres, settings, capsys):
    postgres.create_database(DATABASE)
    url = postgres.url(DATABASE)
    upgrade(url)
    user_id, account_id = asyncio.run(_books_with_a_tampered_balance(url))
    args = parse(["ledger", "verify"])
    assert args.run(settings.model_copy(update={"database_url": url}), args) == 1
    out = capsys.readouterr().out
    assert out.startswith("ledger: 1 problem(s) in 3 accounts, 2 transfers:\n")
    assert f"account {account_id} (user {user_id} available USD): balance 7501 but its postings sum to 7500" in out
