"""`virtuoz ledger verify`: recompute the books from the postings; exit 1 naming every problem.

Safe on a live database: it only reads, in one REPEATABLE READ READ ONLY snapshot, so the
balances and the postings it compares are those of the same instant.
"""

from __future__ import annotations

import argparse
import asyncio

from core.db import create_engine, session_factory
from core.settings import Settings
from custody.ledger.verify import ledger_counts, verify_ledger


def add_commands(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    ledger = subparsers.add_parser("ledger", help="inspect the double-entry ledger")
    commands = ledger.add_subparsers(dest="ledger_command", required=True, metavar="COMMAND")
    verify = commands.add_parser("verify", help="check every ledger invariant; exit 1 naming each problem")
    verify.set_defaults(run=run_verify, process="ledger")


def run_verify(settings: Settings, args: argparse.Namespace | None = None) -> int:
    return asyncio.run(verify(settings.require_database_url()))


async def verify(database_url: str) -> int:
    engine = create_engine(database_url, pool_size=1)
    try:
        async with session_factory(engine)() as session:
            await session.connection(execution_options={"isolation_level": "REPEATABLE READ", "postgresql_readonly": True})
            problems = await verify_ledger(session)
            accounts, transfers = await ledger_counts(session)
    finally:
        await engine.dispose()
    if problems:
        print(f"ledger: {len(problems)} problem(s) in {accounts} accounts, {transfers} transfers:")
        for problem in problems:
            print(f"  - {problem}")
        return 1
    print(f"ledger OK ({accounts} accounts, {transfers} transfers)")
    return 0
