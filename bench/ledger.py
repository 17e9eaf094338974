"""Ledger throughput: hold+post pairs through the ledger service vs. the same rows as raw SQL.

    .venv/bin/python bench/ledger.py [--transfers 2000] [--concurrency 16] [--rounds 2]

Starts its own embedded PostgreSQL in a temporary directory. Each pair is what an escrow does:
one unit of work places a hold (buyer available → held) and appends an audit event, a second one
posts it to the seller and appends another. The baseline writes the same rows with asyncpg and
plain SQL (transfer, postings, balance updates, hold row, audit row; no checks, no locks beyond
the updates' own) at the same concurrency, in the same run. Rounds alternate baseline and
service; the best round of each counts. Goal (DESIGN.md, bench/): ratio ≥ 0.5, ≥ 1,000 ledger
transfers/s. At the end the books must verify: the baseline's rows are the same rows.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import sys
import tempfile
import time
import uuid
from pathlib import Path

import asyncpg

from core import audit
from core.db import create_engine, session_factory, unit_of_work
from core.migrate import upgrade
from custody import ledger
from devnet.processes import free_port
from devnet.servers import EmbeddedPostgres
from identity.models import User

USERS = 200
AMOUNT = 1_000  # 10.00 USD per pair
FUNDING = 10**15


async def setup(sessions) -> list[uuid.UUID]:
    users = [uuid.uuid4() for _ in range(USERS)]
    async with unit_of_work(sessions) as session:
        session.add_all(User(id=user_id, email=f"bench-{user_id.hex}@example.test", display_name="Bench",
                             password_hash="x") for user_id in users)
        await session.flush()
        for user_id in users:
            await ledger.move(session, reference=f"bench-funding:{user_id}", type="deposit",
                              source=ledger.AccountRef.system("bench_funding"),
                              destination=ledger.AccountRef.user(user_id), currency="USD", amount=FUNDING)
            # The held account exists from the start in both runs, as it would after a first hold.
            await ledger.void_hold(session, (await ledger.hold(session, f"bench-warm:{user_id}", user_id, "USD",
                                                               1)).id)
    return users


def pairs(users: list[uuid.UUID], count: int, seed: int) -> list[tuple[uuid.UUID, uuid.UUID]]:
    rng = random.Random(seed)
    return [tuple(rng.sample(users, 2)) for _ in range(count)]  # type: ignore[misc]


async def run_concurrently(jobs: list, concurrency: int, one) -> float:
    queue: asyncio.Queue = asyncio.Queue()
    for job in jobs:
        queue.put_nowait(job)

    async def worker() -> None:
        while not queue.empty():
            await one(queue.get_nowait())

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return time.perf_counter() - started


# --- through the ledger service -----------------------------------------------------------------

def service_pair(sessions, with_audit: bool):
    async def one(job: tuple[uuid.UUID, uuid.UUID]) -> None:
        buyer, seller = job
        escrow_id = uuid.uuid4()
        async with unit_of_work(sessions) as session:
            placed = await ledger.hold(session, f"escrow:{escrow_id}:fund", buyer, "USD", AMOUNT, type="escrow_hold",
                                       reference_kind="escrow", reference_id=str(escrow_id))
            if with_audit:
                await audit.append(session, "escrow", escrow_id, "escrow.funded", {"hold_id": str(placed.id)},
                                   actor=buyer)
        async with unit_of_work(sessions) as session:
            await ledger.post_hold(session, placed.id, ledger.AccountRef.user(seller), type="escrow_release")
            if with_audit:
                await audit.append(session, "escrow", escrow_id, "escrow.released", {"hold_id": str(placed.id)},
                                   actor=buyer)

    return one


# --- the raw baseline: the same rows, plain SQL -------------------------------------------------

async def account_ids(pool: asyncpg.Pool, users: list[uuid.UUID]) -> dict[tuple[uuid.UUID, str], uuid.UUID]:
    rows = await pool.fetch("SELECT id, user_id, kind FROM ledger_accounts WHERE owner_type = 'user'"
                            " AND currency = 'USD' AND user_id = ANY($1::uuid[])", users)
    return {(row["user_id"], row["kind"]): row["id"] for row in rows}


def baseline_pair(pool: asyncpg.Pool, accounts: dict[tuple[uuid.UUID, str], uuid.UUID], with_audit: bool):
    insert_transfer = ("INSERT INTO ledger_transfers (id, reference, type, reference_kind, reference_id, hold_id,"
                       " created_at) VALUES ($1, $2, $3, 'escrow', $4, $5, clock_timestamp())")
    insert_postings = ("INSERT INTO ledger_postings (id, transfer_id, account_id, currency, amount, created_at)"
                       " VALUES ($1, $3, $4, 'USD', $6, now()), ($2, $3, $5, 'USD', $7, now())")
    update_balance = "UPDATE ledger_accounts SET balance = balance + $2 WHERE id = $1"
    insert_audit = ("INSERT INTO audit_events (aggregate_type, aggregate_id, seq, type, data, actor, occurred_at,"
                    " prev_hash, hash) VALUES ('escrow', $1, $2, $3, $4, $5, now(), $6, $7)")

    async def legs(connection, debit: uuid.UUID, credit: uuid.UUID, transfer_id: uuid.UUID) -> None:
        await connection.execute(insert_postings, uuid.uuid4(), uuid.uuid4(), transfer_id, debit, credit,
                                 -AMOUNT, AMOUNT)
        for account, amount in sorted([(debit, -AMOUNT), (credit, AMOUNT)]):  # id order: no deadlock
            await connection.execute(update_balance, account, amount)

    async def one(job: tuple[uuid.UUID, uuid.UUID]) -> None:
        buyer, seller = job
        escrow_id, hold_id = str(uuid.uuid4()), uuid.uuid4()
        available, held = accounts[buyer, "available"], accounts[buyer, "held"]
        async with pool.acquire() as connection, connection.transaction():
            await connection.execute(insert_transfer, hold_id, f"escrow:{escrow_id}:fund", "escrow_hold",
                                     escrow_id, hold_id)
            await legs(connection, available, held, hold_id)
            await connection.execute("INSERT INTO ledger_holds (id, user_id, currency, amount, state, created_at)"
                                     " VALUES ($1, $2, 'USD', $3, 'pending', now())", hold_id, buyer, AMOUNT)
            if with_audit:
                await connection.execute(insert_audit, escrow_id, 1, "escrow.funded", f'{{"hold_id":"{hold_id}"}}',
                                         str(buyer), "0" * 64, "1" * 64)
        async with pool.acquire() as connection, connection.transaction():
            post_id = uuid.uuid4()
            await connection.execute(insert_transfer, post_id, f"escrow:{escrow_id}:fund:post", "escrow_release",
                                     escrow_id, hold_id)
            await legs(connection, held, accounts[seller, "available"], post_id)
            await connection.execute("UPDATE ledger_holds SET state = 'posted', posted_amount = $2, fee = 0,"
                                     " resolved_at = now() WHERE id = $1", hold_id, AMOUNT)
            if with_audit:
                await connection.execute(insert_audit, escrow_id, 2, "escrow.released", f'{{"hold_id":"{hold_id}"}}',
                                         str(buyer), "1" * 64, "2" * 64)

    return one


async def bench(url: str, count: int, concurrency: int, rounds: int, with_audit: bool) -> int:
    engine = create_engine(url, pool_size=concurrency)
    sessions = session_factory(engine)
    pool = await asyncpg.create_pool(url, min_size=concurrency, max_size=concurrency)
    try:
        users = await setup(sessions)
        accounts = await account_ids(pool, users)
        service, baseline = service_pair(sessions, with_audit), baseline_pair(pool, accounts, with_audit)
        for name, one in (("baseline", baseline), ("service", service)):  # warm caches and pools
            await run_concurrently(pairs(users, 200, seed=len(name)), concurrency, one)
        best = {"baseline": 0.0, "service": 0.0}
        for round_number in range(rounds):
            for name, one in (("baseline", baseline), ("service", service)):
                elapsed = await run_concurrently(pairs(users, count, seed=round_number), concurrency, one)
                rate = 2 * count / elapsed  # ledger transfers: a hold and its post
                best[name] = max(best[name], rate)
                print(f"  round {round_number + 1} {name:8} {count} pairs in {elapsed:6.2f}s: "
                      f"{rate:8.0f} ledger transfers/s ({count / elapsed:.0f} hold+post pairs/s)")
        async with sessions() as session:
            problems = await ledger.verify_ledger(session)
    finally:
        await pool.close()
        await engine.dispose()
    ratio = best["service"] / best["baseline"]
    print(f"baseline (raw asyncpg, same rows): {best['baseline']:8.0f} transfers/s")
    print(f"ledger service (checks, locks):    {best['service']:8.0f} transfers/s")
    print(f"ratio service/baseline: {ratio:.2f} (goal >= 0.5; service goal >= 1000 transfers/s)")
    if problems:
        print("ledger verify FAILED:", *problems[:20], sep="\n  ")
        return 1
    print("ledger verify: OK")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--transfers", type=int, default=2000, help="hold+post pairs per round (default 2000)")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--no-audit", action="store_true",
                        help="diagnostic: leave out the audit events on both sides, to see the ledger's own cost")
    args = parser.parse_args()
    os.environ.setdefault("XDG_RUNTIME_DIR", str(Path(tempfile.gettempdir()) / f"virtuoz-runtime-{os.getuid()}"))
    Path(os.environ["XDG_RUNTIME_DIR"]).mkdir(mode=0o700, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="virtuoz-bench-") as directory:
        server = EmbeddedPostgres(Path(directory) / "pg", free_port()).start()
        try:
            server.create_database("bench")
            url = server.url("bench")
            upgrade(url)
            print(f"ledger bench: {args.transfers} hold+post pairs x {args.rounds} rounds, concurrency "
                  f"{args.concurrency}, {os.cpu_count()} CPUs" + (", without audit events" if args.no_audit else ""))
            return asyncio.run(bench(url, args.transfers, args.concurrency, args.rounds, not args.no_audit))
        finally:
            server.stop()


if __name__ == "__main__":
    sys.exit(main())
