"""`virtuoz ledger verify`: recompute the books from the postings, prove them against the
withdrawals and deposits they settle; exit 1 naming every problem.

Safe on a live database: it only reads, in one REPEATABLE READ READ ONLY snapshot, so the
balances, postings, holds and rows it compares are those of the same instant. A cross-table
finding is printed as its stable name, the ids of its rows and why (``custody.books.invariants``).
"""

from __future__ import annotations

import argparse
import asyncio

from core.db import create_engine, session_factory
from core.settings import Settings
from custody.books.invariants import books_counts, verify_books
from custody.ledger.verify import ledger_counts, verify_ledger


def add_commands(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    ledger = subparsers.add_parser("ledger", help="inspect the double-entry ledger")
    commands = ledger.add_subparsers(dest="ledger_command", required=True, metavar="COMMAND")
    verify = commands.add_parser("verify", help="check every ledger invariant, and the withdrawals and deposits "
                                                "against their holds and credits; exit 1 naming each problem")
    verify.set_defaults(run=run_verify, process="ledger")


def run_verify(settings: Settings, args: argparse.Namespace | None = None) -> int:
    return asyncio.run(verify(settings.require_database_url()))


async def verify(database_url: str) -> int:
    engine = create_engine(database_url, pool_size=1)
    try:
        async with session_factory(engine)() as session:
            await session.connection(execution_options={"isolation_level": "REPEATABLE READ", "postgresql_readonly": True})
            problems = await verify_ledger(session)
            findings = await verify_books(session)
            accounts, transfers = await ledger_counts(session)
            withdrawals, deposits = await books_counts(session)
    finally:
        await engine.dispose()
    counted = f"{accounts} accounts, {transfers} transfers, {withdrawals} withdrawals, {deposits} deposits"
    if problems or findings:
        print(f"ledger: {len(problems) + len(findings)} problem(s) in {counted}:")
        for problem in [*problems, *map(str, findings)]:
            print(f"  - {problem}")
        return 1
    print(f"ledger OK ({counted})")
    return 0
