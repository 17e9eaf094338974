"""Ledger throughput: hold+post pairs through the ledger service vs. the same rows as raw SQL.

    .venv/bin/python bench/ledger.py [--transfers 2000] [--concurrency 16] [--rounds 3]

Starts its own embedded PostgreSQL in a temporary directory. Each pair is what an escrow does:
one unit of work places a hold (buyer available → held) and appends an audit event, a second one
posts it to the seller and appends another. Escrows run in the API, so the service's engine is
built as the API builds its own (no pre-ping); ``--pre-ping`` measures the daemons' engine instead
(the custody worker settles withdrawal holds), whose every checkout first costs three round trips. The baseline writes the same rows with asyncpg and
plain SQL (transfer, postings, balance updates, hold row, audit row; no checks, no locks beyond
the updates' own) at the same concurrency, in the same run. Within a round the two take turns in
chunks of 100 pairs (who goes first alternates), so that both meet the same machine load: the
cores are shared, and a neighbour's burst would otherwise land on one side only. The ratio is the
median of the rounds' ratios. Goal (DESIGN.md, bench/): ratio ≥ 0.5, ≥ 1,000 ledger transfers/s.
At the end the books must verify: the baseline's rows are the same rows.

Then it prints where a pair's time goes: a profiled pass of both sides counts round trips (writes
to the PostgreSQL socket: every round trip starts with one) and wall time per step of the service
pair, and the CPU each side costs per pair in this process and in PostgreSQL's backends (the two
share the machine's cores, so CPU is time too).
"""

from __future__ import annotations

import argparse
import asyncio
import asyncio.selector_events
import contextvars
import os
import random
import statistics
import sys
import tempfile
import time
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path

import asyncpg
import psutil

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


# --- where the time goes -----------------------------------------------------------------------

_step: contextvars.ContextVar[str | None] = contextvars.ContextVar("ledger_bench_step", default=None)


class _Untimed:
    async def __aenter__(self) -> None:
        return None

    async def __aexit__(self, *exc_info: object) -> None:
        return None


_UNTIMED = _Untimed()


class Steps:
    """Wall time, CPU time of this process and round trips per named step, exclusive of the steps
    nested in it. CPU per step means something only when one pair runs at a time.

    A round trip is counted as a write to a socket: asyncpg sends each request (a BEGIN, a
    statement's Bind/Execute/Sync, a COMMIT, the pool's ping) in one write, then awaits the answer.
    Off (``enabled`` False) during the measured rounds, where a step costs one shared no-op."""

    def __init__(self) -> None:
        self.enabled = False
        self.seconds: dict[str, float] = defaultdict(float)
        self.cpu: dict[str, float] = defaultdict(float)
        self.trips: dict[str, int] = defaultdict(int)
        self.order: list[str] = []

    def __call__(self, name: str) -> AbstractAsyncContextManager[None]:
        return self._timed(name) if self.enabled else _UNTIMED

    @asynccontextmanager
    async def _timed(self, name: str) -> AsyncIterator[None]:
        if name not in self.order:
            self.order.append(name)
        parent, token = _step.get(), _step.set(name)
        started, cpu_started = time.perf_counter(), time.process_time()
        try:
            yield
        finally:
            elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu_started
            _step.reset(token)
            self.seconds[name] += elapsed
            self.cpu[name] += cpu
            if parent is not None:
                self.seconds[parent] -= elapsed
                self.cpu[parent] -= cpu

    def count_trip(self) -> None:
        if self.enabled and (name := _step.get()) is not None:
            self.trips[name] += 1

    def reset(self) -> None:
        self.seconds.clear()
        self.cpu.clear()
        self.trips.clear()
        self.order.clear()


def count_round_trips(steps: Steps) -> None:
    transport = asyncio.selector_events._SelectorSocketTransport
    write = transport.write

    def counted(self, data):
        steps.count_trip()
        return write(self, data)

    transport.write = counted  # type: ignore[method-assign]


def cpu_seconds(server_pid: int) -> tuple[float, float]:
    """(this process, PostgreSQL's backends) CPU seconds so far: user + system."""
    mine = time.process_time()
    theirs = 0.0
    for backend in psutil.Process(server_pid).children():
        try:
            times = backend.cpu_times()
        except psutil.NoSuchProcess:
            continue
        theirs += times.user + times.system
    return mine, theirs


# --- through the ledger service -----------------------------------------------------------------

def service_pair(sessions, with_audit: bool, steps: Steps):
    async def one(job: tuple[uuid.UUID, uuid.UUID]) -> None:
        buyer, seller = job
        escrow_id = uuid.uuid4()
        async with steps("fund: commit"), unit_of_work(sessions) as session:
            if steps.enabled:  # else the first statement checks the connection out
                async with steps("fund: pool checkout (+ pre-ping)"):
                    await session.connection()
            async with steps("fund: ledger.hold"):
                placed = await ledger.hold(session, f"escrow:{escrow_id}:fund", buyer, "USD", AMOUNT,
                                           type="escrow_hold", reference_kind="escrow", reference_id=str(escrow_id))
            if with_audit:
                async with steps("fund: audit.append"):
                    await audit.append(session, "escrow", escrow_id, "escrow.funded", {"hold_id": str(placed.id)},
                                       actor=buyer)
        async with steps("release: commit"), unit_of_work(sessions) as session:
            if steps.enabled:  # else the first statement checks the connection out
                async with steps("release: pool checkout (+ pre-ping)"):
                    await session.connection()
            async with steps("release: ledger.post_hold"):
                await ledger.post_hold(session, placed.id, ledger.AccountRef.user(seller), type="escrow_release")
            if with_audit:
                async with steps("release: audit.append"):
                    await audit.append(session, "escrow", escrow_id, "escrow.released", {"hold_id": str(placed.id)},
                                       actor=buyer)

    return one


# --- the raw baseline: the same rows, plain SQL -------------------------------------------------

async def account_ids(pool: asyncpg.Pool, users: list[uuid.UUID]) -> dict[tuple[uuid.UUID, str], uuid.UUID]:
    rows = await pool.fetch("SELECT id, user_id, kind FROM ledger_accounts WHERE owner_type = 'user'"
                            " AND currency = 'USD' AND user_id = ANY($1::uuid[])", users)
    return {(row["user_id"], row["kind"]): row["id"] for row in rows}


def baseline_pair(pool: asyncpg.Pool, accounts: dict[tuple[uuid.UUID, str], uuid.UUID], with_audit: bool,
                  steps: Steps):
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
        async with steps("fund"), pool.acquire() as connection, connection.transaction():
            await connection.execute(insert_transfer, hold_id, f"escrow:{escrow_id}:fund", "escrow_hold",
                                     escrow_id, hold_id)
            await legs(connection, available, held, hold_id)
            await connection.execute("INSERT INTO ledger_holds (id, user_id, currency, amount, state, created_at)"
                                     " VALUES ($1, $2, 'USD', $3, 'pending', now())", hold_id, buyer, AMOUNT)
            if with_audit:
                await connection.execute(insert_audit, escrow_id, 1, "escrow.funded", f'{{"hold_id":"{hold_id}"}}',
                                         str(buyer), "0" * 64, "1" * 64)
        async with steps("release"), pool.acquire() as connection, connection.transaction():
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


async def bench(url: str, count: int, concurrency: int, rounds: int, with_audit: bool, pre_ping: bool,
                server_pid: int) -> int:
    engine = create_engine(url, pool_size=concurrency, pre_ping=pre_ping)
    sessions = session_factory(engine)
    pool = await asyncpg.create_pool(url, min_size=concurrency, max_size=concurrency)
    steps = Steps()
    count_round_trips(steps)
    try:
        users = await setup(sessions)
        accounts = await account_ids(pool, users)
        service = service_pair(sessions, with_audit, steps)
        baseline = baseline_pair(pool, accounts, with_audit, steps)
        for name, one in (("baseline", baseline), ("service", service)):  # warm caches and pools
            await run_concurrently(pairs(users, 200, seed=len(name)), concurrency, one)
        best = {"baseline": 0.0, "service": 0.0}
        ratios: list[float] = []
        for round_number in range(rounds):
            jobs = pairs(users, count, seed=round_number)
            spent = {"baseline": 0.0, "service": 0.0}
            for chunk_number, start in enumerate(range(0, count, CHUNK)):
                sides = [("baseline", baseline), ("service", service)]
                for name, one in sides if chunk_number % 2 == 0 else sides[::-1]:
                    spent[name] += await run_concurrently(jobs[start:start + CHUNK], concurrency, one)
            rates = {name: 2 * count / seconds for name, seconds in spent.items()}  # a hold and its post
            ratios.append(rates["service"] / rates["baseline"])
            for name, rate in rates.items():
                best[name] = max(best[name], rate)
                print(f"  round {round_number + 1} {name:8} {count} pairs in {spent[name]:6.2f}s: "
                      f"{rate:8.0f} ledger transfers/s ({rate / 2:.0f} hold+post pairs/s)")
            print(f"  round {round_number + 1} ratio {ratios[-1]:.2f}")
        profiles = {name: await profile(one, steps, users, concurrency, server_pid)
                    for name, one in (("baseline", baseline), ("service", service))}
        async with sessions() as session:
            problems = await ledger.verify_ledger(session)
    finally:
        await pool.close()
        await engine.dispose()
    ratio = statistics.median(ratios)
    print(f"baseline (raw asyncpg, same rows): {best['baseline']:8.0f} transfers/s (best round)")
    print(f"ledger service (checks, locks):    {best['service']:8.0f} transfers/s (best round)")
    print(f"ratio service/baseline (median of rounds, each interleaved): {ratio:.2f} "
          "(goal >= 0.5; service goal >= 1000 transfers/s)")
    report(profiles)
    if problems:
        print("ledger verify FAILED:", *problems[:20], sep="\n  ")
        return 1
    print("ledger verify: OK")
    return 0


CHUNK = 100  # pairs per turn within a round
PROFILED_PAIRS = 300


async def profile(one, steps: Steps, users: list[uuid.UUID], concurrency: int, server_pid: int) -> dict:
    """Two more passes of ``one``: at the same concurrency, its round trips, wall time per step and
    CPU per pair on both sides; then one pair at a time, this process's CPU per step."""
    steps.reset()
    steps.enabled = True
    client, server = cpu_seconds(server_pid)
    try:
        elapsed = await run_concurrently(pairs(users, PROFILED_PAIRS, seed=99), concurrency, one)
        client_after, server_after = cpu_seconds(server_pid)
        found = {"elapsed": elapsed, "client_cpu": client_after - client, "server_cpu": server_after - server,
                 "steps": [(name, steps.trips[name], steps.seconds[name]) for name in steps.order]}
        steps.reset()
        await run_concurrently(pairs(users, PROFILED_PAIRS // 3, seed=98), 1, one)
        found["cpu_by_step"] = {name: steps.cpu[name] / (PROFILED_PAIRS // 3) for name in steps.order}
    finally:
        steps.enabled = False
    return found


def report(profiles: dict[str, dict]) -> None:
    per_pair = {name: sum(trips for _, trips, _ in found["steps"]) / PROFILED_PAIRS
                for name, found in profiles.items()}
    print(f"where a hold+post pair's time goes ({PROFILED_PAIRS} pairs, same concurrency; a round trip is a write "
          "to the PostgreSQL socket):")
    for name, found in profiles.items():
        print(f"  {name:8}: {per_pair[name]:4.1f} round trips/pair, {1000 * found['elapsed'] / PROFILED_PAIRS:5.2f} ms "
              f"wall/pair; CPU/pair: this process {1000 * found['client_cpu'] / PROFILED_PAIRS:5.2f} ms, "
              f"PostgreSQL {1000 * found['server_cpu'] / PROFILED_PAIRS:5.2f} ms")
    service = profiles["service"]
    total = sum(seconds for _, _, seconds in service["steps"]) or 1.0
    print("  service by step: round trips/pair, share of the wall time inside pairs, this process's CPU/pair "
          "(one pair at a time).\n  BEGIN goes with a unit's first statement; 'commit' is the COMMIT and the "
          "session's close:")
    for name, trips, seconds in service["steps"]:
        print(f"    {name:36} {trips / PROFILED_PAIRS:4.1f}  {seconds / total:4.0%}  "
              f"{1000 * service['cpu_by_step'].get(name, 0.0):5.2f} ms")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--transfers", type=int, default=2000, help="hold+post pairs per round (default 2000)")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--pre-ping", action="store_true",
                        help="the daemons' engine (pre-ping on every checkout) rather than the API's")
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
                  f"{args.concurrency}, {os.cpu_count()} CPUs, service engine "
                  + ("with pre-ping (daemons)" if args.pre_ping else "without pre-ping (API)")
                  + (", without audit events" if args.no_audit else ""))
            return asyncio.run(bench(url, args.transfers, args.concurrency, args.rounds, not args.no_audit,
                                     args.pre_ping, server.process.process.pid))
        finally:
            server.stop()


if __name__ == "__main__":
    sys.exit(main())
