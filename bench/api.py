"""API throughput vs. a bare aiohttp server, the escrow write path, and SSE fan-out to 1,000 streams.

    .venv/bin/python bench/api.py [--seconds 10] [--rounds 2] [--clients 64] [--workers N]
                                  [--load-processes 1] [--subscribers 1000] [--fanouts 3]

Starts its own embedded PostgreSQL and Redis (migrated, no chains), then `virtuoz api` with
``--workers`` processes (default: the number of cores, as VIRTUOZ_API_WORKERS defaults to) on one
port, and a bare aiohttp server with as many processes on another port (SO_REUSEPORT, like the
API's workers). The load comes from 127.0.0.1 only and every phase ends by itself:

- reads: ``--clients`` concurrent keep-alive clients, each its own user with its own session,
  ``GET /api/v1/wallet/balances`` with a Bearer token, for ``--seconds`` per round, against the
  bare server answering the same JSON body (serialized per request) and the API, rounds
  alternating. The best round of each counts; p99 is over every measured request of that side.
  Prints ``ratio api/bare`` (requests/s) and both p99s. A third server, the floor, measured in
  the same rounds: the bare server reading the same balance rows with raw asyncpg per request (a
  pool as large as the API's, the user taken from the token unverified) — what any API that reads
  the database per request can reach here at best; ``floor/bare`` bounds ``api/bare``.
- writes: the same clients ``POST /api/v1/escrow`` (create; a fresh ``Idempotency-Key`` each):
  requests/s and p99.
- fan-out: ``--subscribers`` users (one stream each, distinct users: a stream follows its user's
  channel) on ``/api/v1/notifications/stream``; once Redis counts a subscriber on every channel,
  one unit of work notifies them all (``notifications.notify_many``, published after commit, as
  the scanner's batches are) and the time from the commit to the last stream's delivery is
  measured, ``--fanouts`` times.

The load generator is ``--load-processes`` asyncio processes of aiohttp clients; each round prints
the CPU they used (in cores), and the run the machine's load average, since the servers, PostgreSQL
and the load share the cores. A load process near 1.0 core would be the bottleneck; measured on 2
CPUs it is not: about 0.3-0.6 cores against the bare server (the cheapest per request, where it
takes the largest share of the machine, so api/bare errs on the optimistic side) and under 0.2
against the API.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import multiprocessing
import os
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# Run as a script, this file's directory comes first on sys.path, and this file (api.py) would
# shadow the `api` package it measures.
sys.path[:] = [entry for entry in sys.path if Path(entry or ".").resolve() != Path(__file__).resolve().parent]

import aiohttp
import asyncpg
import jwt
from aiohttp import web
from redis.asyncio import Redis

from core.db import after_commit, create_engine, session_factory, unit_of_work
from core.migrate import upgrade
from core.settings import Settings
from core.time import utcnow
from custody import ledger
from devnet.processes import ManagedProcess, free_port, port_open
from devnet.servers import EmbeddedPostgres, EmbeddedRedis
from identity.models import AuthSession, User
from identity.tokens import issue_access_token
from notifications import service as notifications

REPO_ROOT = Path(__file__).resolve().parent.parent
HOST = "127.0.0.1"  # the load generator never leaves this machine
BALANCES = "/api/v1/wallet/balances"
ESCROW = "/api/v1/escrow"
STREAM = "/api/v1/notifications/stream"
CREDIT = "USD:10000.00,ETH:1.5"
TOKEN_TTL = 900  # the longest access token the API issues: longer than a default run
# Bounds for a bench that went wrong, not measurements.
START_TIMEOUT = 120.0
DELIVERY_TIMEOUT = 60.0
REQUEST_TIMEOUT = 30.0
SUBSCRIBE_BATCH = 50


# --- the load generator (in its own processes) ---------------------------------------------------

@dataclass(frozen=True)
class Round:
    url: str
    method: str
    tokens: list[str]  # one client per token
    start_at: float  # time.monotonic(): one clock for every process of the machine
    stop_at: float
    body: dict[str, Any] | None = None


@dataclass
class Result:
    requests: int = 0
    errors: dict[int, int] = field(default_factory=dict)
    latencies: list[float] = field(default_factory=list)
    elapsed: float = 0.0
    cpu: float = 0.0  # this load process's CPU seconds


async def _drive(spec: Round) -> Result:
    result = Result()
    connector = aiohttp.TCPConnector(limit=len(spec.tokens))
    timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        async def client(token: str) -> None:
            headers = {"Authorization": f"Bearer {token}"}
            while time.monotonic() < spec.stop_at:
                if spec.body is not None:
                    headers["Idempotency-Key"] = str(uuid.uuid4())
                started = time.perf_counter()
                async with session.request(spec.method, spec.url, json=spec.body, headers=headers) as response:
                    await response.read()
                result.latencies.append(time.perf_counter() - started)
                if response.status >= 300:
                    result.errors[response.status] = result.errors.get(response.status, 0) + 1

        await asyncio.sleep(max(0.0, spec.start_at - time.monotonic()))
        await asyncio.gather(*(client(token) for token in spec.tokens))
    result.requests = len(result.latencies)
    result.elapsed = time.monotonic() - spec.start_at
    return result


def load(spec: Round) -> Result:
    cpu = time.process_time()
    result = asyncio.run(_drive(spec))
    result.cpu = time.process_time() - cpu
    return result


@dataclass(frozen=True)
class Measured:
    rps: float
    latencies: list[float]
    errors: dict[int, int]
    client_cores: float


def run_round(pool: ProcessPoolExecutor, processes: int, url: str, method: str, tokens: list[str], seconds: float,
              body: dict[str, Any] | None = None) -> Measured:
    start_at = time.monotonic() + 0.5  # every load process connects at the same moment
    shares = [tokens[index::processes] for index in range(processes)]
    results = list(pool.map(load, [Round(url, method, share, start_at, start_at + seconds, body) for share in shares]))
    elapsed = max(result.elapsed for result in results)
    errors: dict[int, int] = {}
    for result in results:
        for status, count in result.errors.items():
            errors[status] = errors.get(status, 0) + count
    return Measured(rps=sum(result.requests for result in results) / elapsed,
                    latencies=[latency for result in results for latency in result.latencies], errors=errors,
                    client_cores=sum(result.cpu for result in results) / elapsed)


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def describe(name: str, measured: Measured) -> str:
    errors = f", NON-2xx {measured.errors}" if measured.errors else ""
    return (f"{name:6} {measured.rps:8.0f} req/s  p50 {1000 * statistics.median(measured.latencies):6.1f} ms  "
            f"p99 {1000 * percentile(measured.latencies, 0.99):6.1f} ms  (load generator {measured.client_cores:.2f} "
            f"cores{errors})")


# --- the bare baseline server ---------------------------------------------------------------------

# What the floor server reads per request: the rows ledger.balances reads, by hand.
FLOOR_READ = "SELECT currency, kind, balance FROM ledger_accounts WHERE owner_type = 'user' AND user_id = $1"


def serve_bare(port: int, body: str, database_url: str | None = None, pool_size: int = 0) -> None:
    """One process of the baseline: the same JSON body, serialized per request, nothing else. With
    ``database_url``, the floor: before answering, the balance rows of the user named by the
    token's ``sub`` (not verified) read with raw asyncpg from a pool of ``pool_size``."""
    document = json.loads(body)
    pool = web.AppKey("pool", asyncpg.Pool)

    async def balances(request: web.Request) -> web.Response:
        if database_url is not None:
            token = request.headers["Authorization"].removeprefix("Bearer ")
            user_id = uuid.UUID(jwt.decode(token, options={"verify_signature": False})["sub"])
            await request.app[pool].fetch(FLOOR_READ, user_id)
        return web.json_response(document)

    async def pid(request: web.Request) -> web.Response:
        return web.Response(text=str(os.getpid()))

    async def connections(app: web.Application) -> AsyncIterator[None]:
        async with asyncpg.create_pool(database_url, min_size=pool_size, max_size=pool_size) as app[pool]:
            yield

    app = web.Application()
    if database_url is not None:
        app.cleanup_ctx.append(connections)
    app.router.add_get(BALANCES, balances)
    app.router.add_get("/pid", pid)
    web.run_app(app, host=HOST, port=port, reuse_port=True, access_log=None, print=None)


async def fresh_get(url: str) -> tuple[int, str]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=REQUEST_TIMEOUT)) as session, \
            session.get(url) as response:
        return response.status, await response.text()


async def until_every_process_answers(processes: list[ManagedProcess], port: int, count: int, answered) -> None:
    """Fresh connections (each lands on a process the kernel picks) until ``answered`` has seen ``count``."""
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        for process in processes:
            if not process.alive():
                raise RuntimeError(f"{process.name} exited during start-up:\n{process.tail()}")
        if port_open(port, HOST) and len(await answered()) >= count:
            return
        await asyncio.sleep(0.2)
    raise TimeoutError(f"not every process answered on port {port}")


# --- set-up: users, sessions, tokens --------------------------------------------------------------

async def make_users(sessions, settings: Settings, count: int, *, credit: bool) -> tuple[list[uuid.UUID], list[str]]:
    """Users with a verified email and a live session each, straight in the tables; their access tokens."""
    users = [uuid.uuid4() for _ in range(count)]
    logins = [uuid.uuid4() for _ in range(count)]
    async with unit_of_work(sessions) as session:
        session.add_all(User(id=user_id, email=f"bench-{user_id.hex}@example.test", display_name="Bench",
                             password_hash="-", email_verified_at=utcnow()) for user_id in users)
        await session.flush()
        session.add_all(AuthSession(id=login, user_id=user_id, ip=HOST, user_agent="bench")
                        for user_id, login in zip(users, logins, strict=True))
        if credit:
            for user_id in users:
                await ledger.sandbox_credit(session, user_id, CREDIT)
    tokens = [issue_access_token(settings, user_id, login, ["customer"]) for user_id, login in zip(users, logins,
                                                                                                 strict=True)]
    return users, tokens


# --- SSE fan-out ----------------------------------------------------------------------------------

class Subscriber:
    """One user's stream; ``ended`` says why it stopped, if it did (a real client would reconnect)."""

    def __init__(self, user_id: uuid.UUID, token: str, delivered: Callable[[int], None]) -> None:
        self.user_id, self.token, self.on_delivery = user_id, token, delivered
        self.delivered: dict[int, float] = {}  # fan-out number → perf_counter at delivery
        self.ended: str | None = None

    async def follow(self, session: aiohttp.ClientSession, url: str) -> None:
        try:
            async with session.get(url, headers={"Authorization": f"Bearer {self.token}"}) as response:
                if response.status != 200:
                    self.ended = f"refused: {response.status} {await response.text()}"
                    return
                async for line in response.content:
                    if line.startswith(b"data: "):
                        number = json.loads(line[6:])["data"]["fanout"]
                        self.delivered[number] = time.perf_counter()
                        self.on_delivery(number)
            self.ended = "closed by the server"
        except asyncio.CancelledError:
            raise
        except Exception as error:  # noqa: BLE001 - reported with the fan-out that misses it
            self.ended = f"{type(error).__name__}: {error}"


async def subscribed(redis: Redis, users: list[uuid.UUID]) -> bool:
    counts = await redis.pubsub_numsub(*(notifications.channel(user_id) for user_id in users))
    return all(subscribers >= 1 for _, subscribers in counts)


async def open_streams(session: aiohttp.ClientSession, redis: Redis, url: str, subscribers: list[Subscriber]
                       ) -> list[asyncio.Task[None]]:
    """A batch at a time, each subscribed (Redis counts it on the user's channel) before the next:
    clients arrive over time, not all in one instant."""
    streams: list[asyncio.Task[None]] = []
    deadline = time.monotonic() + START_TIMEOUT
    for start in range(0, len(subscribers), SUBSCRIBE_BATCH):
        batch = subscribers[start:start + SUBSCRIBE_BATCH]
        streams += [asyncio.create_task(subscriber.follow(session, url)) for subscriber in batch]
        while not await subscribed(redis, [subscriber.user_id for subscriber in batch]):
            ended = [subscriber.ended for subscriber in batch if subscriber.ended]
            if ended:
                raise RuntimeError(f"{len(ended)} streams ended while opening, e.g. {ended[0]}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"streams not subscribed after {START_TIMEOUT:.0f}s")
            await asyncio.sleep(0.02)
    return streams


@dataclass
class FanOut:
    """One commit notifying every stream; times are time.perf_counter() of this process."""

    remaining: int  # deliveries still awaited
    committed: float = 0.0
    first: float = 0.0
    last: float = 0.0
    complete: asyncio.Event = field(default_factory=asyncio.Event)


async def fan_out(sessions, redis: Redis, base: str, users: list[uuid.UUID], tokens: list[str], count: int
                  ) -> list[FanOut]:
    rounds = [FanOut(remaining=len(users)) for _ in range(count)]

    def delivered(number: int) -> None:
        rounds[number].remaining -= 1
        if rounds[number].remaining == 0:
            rounds[number].complete.set()

    subscribers = [Subscriber(user_id, token, delivered) for user_id, token in zip(users, tokens, strict=True)]
    connector = aiohttp.TCPConnector(limit=0)  # one connection per stream, however many
    timeout = aiohttp.ClientTimeout(total=None, sock_connect=REQUEST_TIMEOUT)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        began = time.perf_counter()
        streams = await open_streams(session, redis, base + STREAM, subscribers)
        print(f"  {len(users)} streams open and subscribed in {time.perf_counter() - began:.1f}s "
              f"({SUBSCRIBE_BATCH} at a time)")
        try:
            for number, fanout in enumerate(rounds):
                async with unit_of_work(sessions) as unit:
                    # Registered first, so it runs first after COMMIT: before the publishing.
                    after_commit(unit, lambda fanout=fanout: setattr(fanout, "committed", time.perf_counter()))
                    await notifications.notify_many(unit, [(user_id, "bench.fanout", {"fanout": number})
                                                           for user_id in users])
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(fanout.complete.wait(), DELIVERY_TIMEOUT)
                times = [subscriber.delivered[number] for subscriber in subscribers if number in subscriber.delivered]
                fanout.first, fanout.last = min(times, default=0.0), max(times, default=0.0)
                ended = [subscriber.ended for subscriber in subscribers if subscriber.ended]
                missing = f", {fanout.remaining} NOT DELIVERED ({len(ended)} streams ended, e.g. {ended[:1]})" \
                    if fanout.remaining else ""
                print(f"  fan-out {number + 1}: commit -> last of {len(times)} deliveries "
                      f"{1000 * (fanout.last - fanout.committed):7.1f} ms (first "
                      f"{1000 * (fanout.first - fanout.committed):.1f} ms){missing}")
                await asyncio.sleep(0.5)
        finally:
            for stream in streams:
                stream.cancel()
            await asyncio.gather(*streams, return_exceptions=True)
    return rounds


# --- the run --------------------------------------------------------------------------------------

async def bench(args: argparse.Namespace, root: Path, database_url: str, redis_url: str) -> int:
    logs = args.logs or root
    settings = Settings(env="test", database_url=database_url, redis_url=redis_url,
                        access_token_ttl_seconds=TOKEN_TTL)
    engine = create_engine(database_url, pool_size=4)
    sessions = session_factory(engine)
    redis = Redis.from_url(redis_url)
    notifications.bind_publisher(sessions, redis)
    processes: list[ManagedProcess] = []
    try:
        _, reader_tokens = await make_users(sessions, settings, args.clients, credit=True)

        api_port = free_port()
        env = {
            **os.environ, "VIRTUOZ_ENV": "test", "VIRTUOZ_DATA_DIR": str(root / "data"),
            "VIRTUOZ_DATABASE_URL": database_url, "VIRTUOZ_REDIS_URL": redis_url, "VIRTUOZ_CHAINS": "[]",
            "VIRTUOZ_READINESS": json.dumps({"workers": [], "chains": False}), "VIRTUOZ_LOG_LEVEL": "WARNING",
            "VIRTUOZ_API_WORKERS": str(args.workers), "VIRTUOZ_ACCESS_TOKEN_TTL_SECONDS": str(TOKEN_TTL),
        }
        api = ManagedProcess("api", [sys.executable, "-m", "cli", "api", "--host", HOST, "--port", str(api_port)],
                             env=env, cwd=REPO_ROOT, log_path=logs / "api.log").start()
        processes.append(api)
        api_url = f"http://{HOST}:{api_port}"

        async def api_workers() -> set[str]:
            await fresh_get(api_url + "/health")
            metrics = (await fresh_get(api_url + "/metrics"))[1]
            return {line.split('worker="')[1].split('"')[0] for line in metrics.splitlines()
                    if line.startswith("virtuoz_api_worker_requests_total{")}

        await until_every_process_answers([api], api_port, args.workers, api_workers)
        status, body = await fresh_get_with(api_url + BALANCES, reader_tokens[0])
        assert status == 200, body

        async def baseline(name: str, *database: str) -> str:
            port = free_port()
            servers = [ManagedProcess(f"{name}-{index}", [sys.executable, str(Path(__file__).resolve()), "--bare-port",
                                                          str(port), "--bare-body", body, *database],
                                      cwd=REPO_ROOT, log_path=logs / f"{name}-{index}.log").start()
                       for index in range(args.workers)]
            processes.extend(servers)
            url = f"http://{HOST}:{port}"
            pids: set[str] = set()

            async def answered() -> set[str]:
                pids.add((await fresh_get(url + "/pid"))[1])
                return pids

            await until_every_process_answers(servers, port, args.workers, answered)
            return url

        targets = {"bare": await baseline("bare"),
                   "floor": await baseline("floor", "--bare-database", database_url, "--bare-pool-size",
                                           str(2 * settings.database_pool_size)),
                   "api": api_url}
        print(f"api bench: {args.clients} clients, {args.seconds:g}s x {args.rounds} rounds, {args.workers} API and "
              f"bare processes, {args.load_processes} load process(es), {os.cpu_count()} CPUs (load average "
              f"{os.getloadavg()[0]:.1f} before); body {len(body)} bytes: {body}")

        spawn = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(max_workers=args.load_processes, mp_context=spawn) as pool:
            for target in targets.values():  # warm up: connections, pools, caches
                run_round(pool, args.load_processes, target + BALANCES, "GET", reader_tokens, min(2.0, args.seconds))
            measured: dict[str, list[Measured]] = {name: [] for name in targets}
            for number in range(args.rounds):
                for name, target in targets.items():
                    round_result = run_round(pool, args.load_processes, target + BALANCES, "GET", reader_tokens,
                                             args.seconds)
                    measured[name].append(round_result)
                    print(f"  round {number + 1} {describe(name, round_result)}")
            best = {name: max(rounds, key=lambda result: result.rps) for name, rounds in measured.items()}
            p99 = {name: percentile([latency for result in rounds for latency in result.latencies], 0.99)
                   for name, rounds in measured.items()}

            escrow_body = {"title": "Bench escrow", "amount": "10.00", "currency": "USD"}
            run_round(pool, args.load_processes, api_url + ESCROW, "POST", reader_tokens, min(2.0, args.seconds),
                      escrow_body)
            writes = []
            for number in range(args.rounds):
                round_result = run_round(pool, args.load_processes, api_url + ESCROW, "POST", reader_tokens,
                                         args.seconds, escrow_body)
                writes.append(round_result)
                print(f"  round {number + 1} {describe('escrow', round_result)}")
        best_write = max(writes, key=lambda result: result.rps)
        write_p99 = percentile([latency for result in writes for latency in result.latencies], 0.99)

        subscribers, subscriber_tokens = await make_users(sessions, settings, args.subscribers, credit=False)
        fanouts = await fan_out(sessions, redis, api_url, subscribers, subscriber_tokens, args.fanouts)

        print(f"bare aiohttp ({args.workers} processes): {best['bare'].rps:8.0f} req/s, p99 {1000 * p99['bare']:.1f} ms")
        print(f"API GET {BALANCES} ({args.workers} workers): {best['api'].rps:8.0f} req/s, "
              f"p99 {1000 * p99['api']:.1f} ms")
        print(f"floor, bare + one raw asyncpg read per request ({args.workers} processes): "
              f"{best['floor'].rps:8.0f} req/s, p99 {1000 * p99['floor']:.1f} ms")
        print(f"ratio api/bare: {best['api'].rps / best['bare'].rps:.2f}")
        print(f"ratio floor/bare: {best['floor'].rps / best['bare'].rps:.2f} (what one database read per request "
              f"leaves of the bare server), api/floor: {best['api'].rps / best['floor'].rps:.2f}")
        print(f"API POST {ESCROW} (create, Idempotency-Key): {best_write.rps:8.0f} req/s, p99 {1000 * write_p99:.1f} ms")
        print(f"load average {os.getloadavg()[0]:.1f} at the end (other work on this machine skews every figure)")
        delays = [fanout.last - fanout.committed for fanout in fanouts]
        if delays:
            print(f"SSE fan-out to {args.subscribers} streams, commit -> last delivery: median "
                  f"{1000 * statistics.median(delays):.1f} ms, max {1000 * max(delays):.1f} ms over {len(delays)} commits")
        failed = any(result.errors for result in (*(result for rounds in measured.values() for result in rounds),
                                                  *writes))
        if failed:
            print("some requests failed (see NON-2xx above): FAILED")
        if any(fanout.remaining for fanout in fanouts):
            print("some notifications were not delivered (see above): FAILED")
            failed = True
        return 1 if failed else 0
    finally:
        for process in reversed(processes):
            process.stop(timeout=30)
        await redis.aclose()
        await engine.dispose()


async def fresh_get_with(url: str, token: str) -> tuple[int, str]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=REQUEST_TIMEOUT)) as session, \
            session.get(url, headers={"Authorization": f"Bearer {token}"}) as response:
        return response.status, await response.text()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="length of each measured round (default 10)")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--clients", type=int, default=64, help="concurrent clients (default 64)")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1,
                        help="API processes, and bare server processes (default: the number of cores)")
    parser.add_argument("--load-processes", type=int, default=1, help="load generator processes (default 1)")
    parser.add_argument("--subscribers", type=int, default=1000, help="SSE streams, one user each (default 1000)")
    parser.add_argument("--fanouts", type=int, default=3, help="commits notifying every stream (default 3)")
    parser.add_argument("--logs", type=Path, help="keep the API's and the bare servers' logs here (default: "
                                                  "the temporary directory, removed at the end)")
    parser.add_argument("--bare-port", type=int, help=argparse.SUPPRESS)  # internal: one bare server process
    parser.add_argument("--bare-body", help=argparse.SUPPRESS)
    parser.add_argument("--bare-database", help=argparse.SUPPRESS)  # internal: a floor server's database
    parser.add_argument("--bare-pool-size", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.bare_port:
        serve_bare(args.bare_port, args.bare_body, args.bare_database, args.bare_pool_size)
        return 0
    os.environ.setdefault("XDG_RUNTIME_DIR", str(Path(tempfile.gettempdir()) / f"virtuoz-runtime-{os.getuid()}"))
    Path(os.environ["XDG_RUNTIME_DIR"]).mkdir(mode=0o700, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="virtuoz-bench-") as directory:
        root = Path(directory)
        postgres = EmbeddedPostgres(root / "pg", free_port()).start()
        redis = EmbeddedRedis(root / "redis", free_port()).start()
        try:
            postgres.create_database("bench")
            url = postgres.url("bench")
            upgrade(url)
            return asyncio.run(bench(args, root, url, redis.url()))
        finally:
            redis.stop()
            postgres.stop()


if __name__ == "__main__":
    sys.exit(main())
