"""The platform scaled out, in production settings, while its processes die under it.

Two API processes, two of each worker (custody, deposits, compliance), an allocator and a
notifications worker, two schedulers (one leads), a scanner and a standby per chain (one holds the
chain's lease), the signer; PostgreSQL, RabbitMQ, Redis, an S3 server (moto) and two Anvil chains.
Every process runs with ``VIRTUOZ_ENV=production``: a random secret key, the signer's passphrase
from a file, explicit finality per chain, no sandbox credit.

Through the public API, alternating between the two APIs: customers take deposit addresses on both
chains, KYC documents go up through one API and come down through the other (the bucket), 50
deposits are funded from Anvil's dev accounts, 20 customers withdraw part of theirs (Idempotency-Key
on every financial POST) and operators approve, four of them while RabbitMQ is down. Meanwhile the
active Ethereum scanner, a custody worker, the leading scheduler and an API process (under
customers' reads; started again, as an orchestrator would) are SIGKILLed and RabbitMQ restarts once.
Afterwards every deposit is credited once, every withdrawal confirmed once (its destination paid
once, its transaction mined), each hot wallet's mined nonces run without a gap or a repeat, no
``(job, period)`` is in ``scheduled_runs`` twice, `virtuoz ledger verify` and `virtuoz audit verify`
pass, and no customer got a 500. The test prints what it did and what it found, passed or not.

Only this test's processes are killed: the session's PostgreSQL and RabbitMQ are shared, and
RabbitMQ is restarted (its data kept), never killed.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import secrets
import subprocess
import sys
import time
import urllib.request
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest
import redis
from web3 import HTTPProvider, Web3

from core.migrate import upgrade
from core.sign_requests import load_signer_public_key
from custody.hd import load_xpubs
from custody.withdrawals.authorization import ensure_request_key_pair
from devnet.chains import AnvilChain, deploy_usdc, fund_wallet
from devnet.processes import ManagedProcess, free_port
from devnet.servers import EmbeddedPostgres, EmbeddedRedis, RabbitMQ
from jobs.broker import close_broker, create_broker
from signer.derivation import ChainKeys
from signer.keystore import MIN_SCRYPT_N, init_keystore
from tests.chain_fixtures import usdc_artifact, usdc_cache_dir  # noqa: F401 - fixtures
from tests.chain_wallet import ChainWallet
from tests.e2e.withdrawal_cluster import REPO_ROOT, Cluster, User, fresh_address
from tests.factories import Totp
from tests.s3_server import S3Server, start_moto

# The whole run, set-up included, is bounded here; the default 300 s is for one test of the suite.
pytestmark = [pytest.mark.e2e, pytest.mark.timeout(480)]

BLOCK_TIME = 0.4
CONFIRMATIONS = 2
LEASE_SECONDS = 5  # scheduler and scanner: a standby takes over within about this long
# What the processes' logs are searched for afterwards (shown, not asserted): how the faults were lived through.
LOG_EVENTS = {"enqueue after commit failed": "after_commit callback enqueue failed",
              "deposit messages not sent": "deposit job messages not sent",
              "lease lost": ": lease lost", "deadlock": "DeadlockDetectedError",
              "ack of a redelivered message": "Failed to ack message"}
CUSTOMERS = 20  # the first half on Ethereum, the second on Polygon
DEPOSITS = 50
APPROVERS = 10  # two approvals each: one TOTP step apiece, no waiting for the next
TIMEOUT = 120.0  # a bound for a hung wait, not a performance limit
KYC_APPLICATION = {"first_name": "Ada", "last_name": "Lovelace", "date_of_birth": "1985-12-10", "country": "CA",
                   "address": {"street_name": "Rue Sherbrooke O", "building_number": "1380", "post_code": "H3G 1J5",
                               "town_name": "Montreal", "country": "CA"}}
KYC_DOCUMENTS = [("passport.png", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + b"\x00" * 200, "image/png"),
                 ("bill.pdf", b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<<>>\nendobj\ntrailer\n<<>>\n%%EOF\n",
                  "application/pdf")]


@dataclasses.dataclass(frozen=True)
class Chain:
    name: str
    chain_id: int
    native: str
    account: int
    deposit_wei: int
    withdrawal: str  # major units, less than a customer's first deposit with the fee


CHAINS = (Chain("ethereum", 31337, "ETH", 0, 10**17, "0.05"),
          Chain("polygon", 31338, "POL", 1, 2 * 10**18, "1"))


@dataclasses.dataclass
class Platform:
    """The running cluster: ``clusters`` are one ``Cluster`` per API (same processes, database, env)."""

    clusters: list[Cluster]
    anvils: dict[str, AnvilChain]
    hot_wallets: dict[str, str]
    scheduler_ports: dict[str, int]
    redis: EmbeddedRedis
    moto: ManagedProcess
    s3: S3Server
    bucket: str
    dead: list[ManagedProcess] = dataclasses.field(default_factory=list)
    turn: int = 0
    failovers: int = 0  # requests another API answered because the first did not

    @property
    def main(self) -> Cluster:
        return self.clusters[0]

    def web3(self, chain: str) -> Web3:
        return Web3(HTTPProvider(self.anvils[chain].rpc_url, request_kwargs={"timeout": 10}))

    def kill(self, name: str) -> float:
        """SIGKILL ``name``; it leaves the processes that must stay alive. Returns when (monotonic)."""
        process = self.main.processes.pop(name)
        assert process.process is not None
        process.process.kill()
        process.process.wait(10)
        self.dead.append(process)
        return time.monotonic()

    async def call(self, method: str, path: str, headers: dict[str, str] | None = None,
                   json_body: Any = None) -> tuple[int, Any]:
        """Alternately through each API; one that does not answer (killed) is skipped, as a load balancer
        would. A request cut off mid-way may have taken effect: the financial POSTs here carry an
        Idempotency-Key, so sending them again to the other API is safe."""
        self.turn += 1
        last: Exception | None = None
        for offset in range(len(self.clusters)):
            cluster = self.clusters[(self.turn + offset) % len(self.clusters)]
            try:
                return await cluster.call(method, path, headers, json_body)
            except aiohttp.ClientConnectionError as error:
                last = error
                self.failovers += 1
        raise AssertionError(f"{method} {path}: no API answered ({last})\n{self.main.logs()}")

    async def wait_for(self, condition: Callable[[], Awaitable[bool]], what: str, timeout: float = TIMEOUT) -> None:
        await self.main.wait_for(condition, what, timeout)

    async def query(self, sql: str, *args: Any) -> list[asyncpg.Record]:
        return await self.main.query(sql, *args)

    def stop(self) -> None:
        processes = list(self.main.processes.values())
        for process in processes:
            process.signal_stop()
        for process in processes:
            process.wait_stopped(20)
        for process in processes + self.dead:
            if process.alive():  # past its grace: no orphan left behind
                process.process.kill()  # type: ignore[union-attr]
        for anvil in self.anvils.values():
            anvil.stop()
        self.redis.stop()
        self.moto.stop()


def scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as answer:
        return answer.read().decode()


def leads(port: int) -> bool | None:
    """The scheduler's ``virtuoz_scheduler_leader`` gauge; None while its /metrics does not answer."""
    try:
        text = scrape(port)
    except OSError:
        return None
    return any(line.startswith("virtuoz_scheduler_leader ") and float(line.split()[1]) == 1.0
               for line in text.splitlines())


def holds_lease(process: ManagedProcess) -> bool:
    """A scanner that has logged taking its chain's lease (core.lease.follow)."""
    return ": lease acquired" in process.tail(10_000)


def build_platform(root: Path, postgres: EmbeddedPostgres, artifact: dict[str, Any], rabbitmq: RabbitMQ) -> Platform:
    data_dir = root / "data"
    logs = data_dir / "logs"
    logs.mkdir(parents=True)
    database = f"scale_out_{uuid.uuid4().hex[:8]}"
    postgres.create_database(database)
    database_url = postgres.url(database)
    upgrade(database_url)
    redis = EmbeddedRedis(root / "redis", free_port(), log_dir=logs).start()
    moto, s3 = start_moto(logs)
    bucket = asyncio.run(s3.new_bucket())
    anvils: dict[str, AnvilChain] = {}
    usdc: dict[str, str] = {}
    for chain in CHAINS:
        anvils[chain.name] = AnvilChain(chain.name, chain.chain_id, free_port(), root / f"anvil-{chain.name}",
                                        block_time=BLOCK_TIME, log_dir=logs).start()
        usdc[chain.name] = deploy_usdc(anvils[chain.name].rpc_url, artifact, root / "contracts.json")

    # The signer's keystore, sealed with a passphrase of our own (production refuses the devnet's).
    passphrase_file = data_dir / "signer-passphrase"
    passphrase_file.write_text(secrets.token_urlsafe(32))
    passphrase_file.chmod(0o600)
    xpub_file, public_key_file = data_dir / "xpubs.json", data_dir / "signer-key.pub"
    init_keystore(data_dir / "signer", xpub_file, passphrase_file.read_text(),
                  [ChainKeys.default(chain.name, chain.account) for chain in CHAINS],
                  public_key_file=public_key_file, scrypt_n=MIN_SCRYPT_N)
    ensure_request_key_pair(data_dir / "custody-request-key.pem", data_dir / "custody-request-key.pub")
    xpubs = load_xpubs(xpub_file, load_signer_public_key(public_key_file))
    hot_wallets = {chain.name: xpubs[chain.name].hot_wallet for chain in CHAINS}
    for chain in CHAINS:
        fund_wallet(anvils[chain.name].rpc_url, hot_wallets[chain.name], artifact, usdc[chain.name],
                    native_wei=100 * 10**18, usdc_minor=10**9)

    chains = [{"name": chain.name, "chain_id": chain.chain_id, "rpc_url": anvils[chain.name].rpc_url,
               "native": chain.native, "confirmations": CONFIRMATIONS, "finality": "confirmations",
               "tokens": {"USDC": usdc[chain.name]}, "account": chain.account, "start_height": 0}
              for chain in CHAINS]
    api_ports = [free_port(), free_port()]  # api-b is started again on its port
    high = json.dumps({"ETH": "1000", "POL": "1000000", "USDC": "1000000"})
    env = {
        **{name: value for name, value in os.environ.items() if not name.startswith("VIRTUOZ_")},
        "VIRTUOZ_ENV": "production",
        "VIRTUOZ_SECRET_KEY": secrets.token_urlsafe(48),
        "VIRTUOZ_DATA_DIR": str(data_dir),
        "VIRTUOZ_DATABASE_URL": database_url,
        "VIRTUOZ_DATABASE_POOL_SIZE": "4",  # 17 processes on one PostgreSQL of 200 connections
        "VIRTUOZ_REDIS_URL": redis.url(),
        "VIRTUOZ_BROKER_URL": rabbitmq.url(),
        **s3.environment(bucket),
        "VIRTUOZ_CHAINS": json.dumps(chains),
        "VIRTUOZ_API_WORKERS": "1",
        "VIRTUOZ_LOG_JSON": "false",
        "VIRTUOZ_HEARTBEAT_INTERVAL_SECONDS": "2",
        "VIRTUOZ_SCHEDULER_LEASE_SECONDS": str(LEASE_SECONDS),
        "VIRTUOZ_SCANNER_LEASE_SECONDS": str(LEASE_SECONDS),
        "VIRTUOZ_SCANNER_POLL_SECONDS": "0.2",
        "VIRTUOZ_SCANNER_MAX_BACKOFF_SECONDS": "1",
        "VIRTUOZ_SCANNER_RESEND_SECONDS": "5",  # credit requests lost with the broker are sent again after this
        "VIRTUOZ_ADDRESS_POOL_LOW_WATER": "10",
        "VIRTUOZ_ADDRESS_POOL_BATCH": "30",
        "VIRTUOZ_REGISTRATIONS_PER_HOUR": "1000",  # every customer registers from 127.0.0.1
        "VIRTUOZ_SANCTIONS_LIST_FILE": str(REPO_ROOT / "deploy" / "devnet" / "sanctions.txt"),
        "VIRTUOZ_WITHDRAWAL_TRACK_SECONDS": "0.5",
        "VIRTUOZ_WITHDRAWAL_RESEND_SECONDS": "2",
        "VIRTUOZ_WITHDRAWAL_STUCK_BLOCKS": "5",
        "VIRTUOZ_WITHDRAWAL_REBROADCAST_BLOCKS": "10",
        "VIRTUOZ_WITHDRAWAL_TRAVEL_RULE_THRESHOLDS": high,
        "VIRTUOZ_WITHDRAWAL_FOUR_EYES_THRESHOLDS": high,
        "VIRTUOZ_KYC_WITHDRAWAL_LIMITS": "{}",  # the customers here are unverified (compliance.kyc.limits)
    }
    eth_usdc = usdc["ethereum"]
    clusters = [Cluster(data_dir, database_url, redis.url(), anvils["ethereum"], eth_usdc, artifact["abi"],
                        hot_wallets["ethereum"], f"http://127.0.0.1:{port}", env, []) for port in api_ports]
    for cluster in clusters[1:]:
        cluster.processes = clusters[0].processes  # one set of processes, two front doors
    platform = Platform(clusters, anvils, hot_wallets, {"scheduler-1": free_port(), "scheduler-2": free_port()},
                        redis, moto, s3, bucket)
    main = platform.main
    try:
        # What an earlier test of the session left on the shared RabbitMQ node is not ours to consume.
        broker = create_broker(redis.url(), broker_url=rabbitmq.url())
        try:
            broker.flush_all()
        finally:
            close_broker(broker)
        main.start("signer", ["signer"], {**env, "VIRTUOZ_SIGNER_PASSPHRASE_FILE": str(passphrase_file)})
        for kind in ("custody", "deposits", "compliance"):
            for index in (1, 2):
                main.start(f"{kind}-{index}", ["worker", kind])
        main.start("allocator", ["worker", "allocator"])
        main.start("notifications", ["worker", "notifications"])
        for name, port in platform.scheduler_ports.items():
            main.start(name, ["scheduler"], {**env, "VIRTUOZ_METRICS_PORT": str(port)})
        for chain in CHAINS:
            for index in (1, 2):
                main.start(f"scanner-{chain.name}-{index}", ["scanner", "--chain", chain.name])
        for letter, port in zip("ab", api_ports, strict=True):
            main.start(f"api-{letter}", ["api"], {**env, "VIRTUOZ_API_PORT": str(port)})
    except BaseException:
        platform.stop()
        raise
    return platform


@pytest.fixture
def platform(tmp_path: Path, postgres: EmbeddedPostgres, usdc_artifact: dict[str, Any],  # noqa: F811
             rabbitmq: RabbitMQ) -> Iterator[Platform]:
    platform = build_platform(tmp_path, postgres, usdc_artifact, rabbitmq)
    try:
        yield platform
    finally:
        platform.stop()


# --- the public API -----------------------------------------------------------------------------


async def deposit_address(platform: Platform, customer: User, chain: Chain) -> str:
    found: dict[str, Any] = {}

    async def allocated() -> bool:
        status, body = await platform.call("POST", "/platform/crypto/address/allocate", customer.headers,
                                           {"chain": chain.name, "asset": chain.native})
        if status in (200, 201):
            found.update(body)
        return status in (200, 201)  # 503 address_pool_empty while the allocator fills the pool

    await platform.wait_for(allocated, f"a deposit address on {chain.name}")
    return found["address"]


async def request_and_approve(platform: Platform, customer: User, operator: User, chain: Chain,
                              statuses: Counter[int]) -> tuple[str, str]:
    """A withdrawal of ``chain``'s native coin to a fresh address, approved; (its id, the destination).

    A 503 (a dependency down) is tried again, as a client would, and so is a 500 (the transaction was rolled
    back) so that the run goes on and shows what else it finds; the test fails on any 500 at the end. Every
    answer is counted in ``statuses``."""
    destination = fresh_address()
    body = await answered(platform, statuses, 201, "POST", "/platform/crypto/withdrawals/request", customer.headers,
                          {"chain": chain.name, "asset": chain.native, "to_address": destination,
                           "amount": chain.withdrawal})
    assert operator.totp is not None
    async with operator.totp.lock:
        approved = await answered(platform, statuses, 200, "POST", f"/platform/crypto/withdrawals/{body['id']}/sign",
                                  operator.headers, totp=operator.totp)
    assert approved["state"] == "approved", approved
    return body["id"], destination


async def answered(platform: Platform, statuses: Counter[int], expected: int, method: str, path: str,
                   headers: dict[str, str], json_body: dict[str, Any] | None = None, *,
                   totp: Totp | None = None) -> dict[str, Any]:
    deadline = time.monotonic() + TIMEOUT
    key = str(uuid.uuid4())
    while True:
        if totp is not None:  # an approval: a fresh code each time (the server takes each once), so a fresh key
            json_body, key = {"totp_code": await totp.code()}, str(uuid.uuid4())
        status, body = await platform.call(method, path, {**headers, "Idempotency-Key": key}, json_body)
        statuses[status] += 1
        in_flight = status == 409 and body["error"]["code"] == "idempotency_in_flight"  # a twin cut off mid-way
        if not (status in (500, 503) or in_flight) or time.monotonic() > deadline:
            assert status == expected, (method, path, status, body)
            return body
        await asyncio.sleep(0.5)


async def reads_meanwhile(platform: Platform, customer: User, statuses: Counter[int], until: asyncio.Event) -> None:
    """A customer's balance read every 50 ms through either API until ``until``: an outage answers 503, never 500."""
    while not until.is_set():
        status, _ = await platform.call("GET", "/wallet/balances", customer.headers)
        statuses[status] += 1
        await asyncio.sleep(0.05)


async def files_through_both_apis(platform: Platform) -> str:
    """KYC documents uploaded through one API land in the bucket and a compliance officer downloads
    them through the other: the file store every replica shares. What it saw, for the report."""
    uploader, reader = platform.clusters
    applicant, officer = await uploader.user(), await reader.approver("compliance")
    upload = aiohttp.FormData(default_to_multipart=True)
    for name, value in KYC_APPLICATION.items():
        upload.add_field(name, json.dumps(value) if isinstance(value, dict) else value)
    for filename, content, content_type in KYC_DOCUMENTS:
        upload.add_field("documents", content, filename=filename, content_type=content_type)
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{uploader.api_url}/api/v1/me/kyc", data=upload, headers=applicant.headers) as answer:
            submitted = await answer.json()
            assert answer.status == 201, submitted
        for document, (_, content, _) in zip(submitted["documents"], KYC_DOCUMENTS, strict=True):
            async with http.get(f"{reader.api_url}/api/v1/admin/kyc/{applicant.user_id}/documents/{document['id']}",
                                headers=officer.headers) as answer:
                assert answer.status == 200 and await answer.read() == content, answer.status
    stored = await platform.s3.objects(platform.bucket)
    evidence = [content for key, content in stored.items() if key.startswith("virtuoz/evidence/")]
    assert sorted(evidence) == sorted(content for _, content, _ in KYC_DOCUMENTS), list(stored)
    # The compliance workers write their reports there too (the scheduler asks for some at start).
    reports = [key for key in stored if key.startswith("virtuoz/reports/")]
    return (f"{len(KYC_DOCUMENTS)} KYC documents up through api-a, down through api-b; in the bucket"
            f" {len(evidence)} evidence objects, {len(reports)} report objects")


# --- the chain ----------------------------------------------------------------------------------


def hot_wallet_nonces(web3: Web3, hot_wallet: str) -> list[int]:
    """The nonces of every transaction the hot wallet got mined, in order."""
    nonces = []
    for number in range(web3.eth.block_number + 1):
        for transaction in web3.eth.get_block(number, full_transactions=True)["transactions"]:
            if transaction["from"] == hot_wallet:
                nonces.append(transaction["nonce"])
    return sorted(nonces)


# --- the test -----------------------------------------------------------------------------------


async def test_the_scaled_out_platform_loses_nothing_and_does_nothing_twice(platform: Platform,
                                                                           rabbitmq: RabbitMQ) -> None:
    began = time.monotonic()
    done: list[tuple[str, str]] = []
    faults: list[tuple[str, str]] = []
    found: list[tuple[str, str]] = []

    def at() -> str:
        return f"t+{time.monotonic() - began:5.1f}s"

    try:
        for cluster in platform.clusters:
            await cluster.wait_ready()
        schedulers = platform.scheduler_ports

        async def one_leader() -> bool:
            answers = await asyncio.gather(*(asyncio.to_thread(leads, port) for port in schedulers.values()))
            return sum(answer is True for answer in answers) == 1

        await platform.wait_for(one_leader, "one scheduler leading")
        done.append(("started", f"{len(platform.main.processes)} processes ready in {time.monotonic() - began:.1f}s"))

        # Customers, their deposit addresses, operators: alternately through both APIs.
        setup = time.monotonic()
        customers = await asyncio.gather(*(platform.clusters[index % 2].user() for index in range(CUSTOMERS)))
        operators = [await platform.clusters[index % 2].approver() for index in range(APPROVERS)]
        chain_of = [CHAINS[0] if index < CUSTOMERS // 2 else CHAINS[1] for index in range(CUSTOMERS)]
        addresses = [await deposit_address(platform, customer, chain)
                     for customer, chain in zip(customers, chain_of, strict=True)]
        done.append(("customers, operators", (f"{CUSTOMERS} customers with an address, {APPROVERS} operators with MFA"
                                              f" in {time.monotonic() - setup:.1f}s")))
        done.append(("S3 file store", await files_through_both_apis(platform)))
        wallets = {chain.name: ChainWallet(platform.anvils[chain.name].rpc_url) for chain in CHAINS}

        async def fund(indexes: range) -> None:
            for index in indexes:
                customer = index % CUSTOMERS
                chain = chain_of[customer]
                await asyncio.to_thread(wallets[chain.name].send_native, addresses[customer], chain.deposit_wei, wait=False)

        async def credited(count: int) -> bool:
            rows = await platform.query("SELECT count(*) AS n FROM deposits WHERE state = 'credited'")
            return rows[0]["n"] >= count

        # 1. A first deposit each; the active Ethereum scanner is killed while they are being scanned.
        await fund(range(CUSTOMERS))
        scanners = [platform.main.processes[f"scanner-ethereum-{index}"] for index in (1, 2)]
        active = next(process for process in scanners if holds_lease(process))
        standby = next(process for process in scanners if process is not active)
        killed_at = platform.kill(active.name)
        await platform.wait_for(lambda: asyncio.to_thread(holds_lease, standby), "the standby scanner taking over")
        faults.append((f"SIGKILL {active.name} (active)", (f"{at()}: {standby.name} took the lease"
                                                           f" {time.monotonic() - killed_at:.1f}s later")))
        await platform.wait_for(lambda: credited(CUSTOMERS), f"{CUSTOMERS} first deposits credited")

        # 2. Half the withdrawals, approved; more deposits; a custody worker and the leading scheduler die.
        withdrawals: list[tuple[str, str, Chain]] = []
        first_half = [index for index in range(CUSTOMERS) if index % 10 < 5]
        second_half = [index for index in range(CUSTOMERS) if index % 10 >= 5]

        api_statuses: Counter[int] = Counter()

        async def withdraw(indexes: list[int], first_operator: int = 0) -> None:
            # Each operator approves at most twice in all: one TOTP step each, no waiting for the next.
            made = await asyncio.gather(*(request_and_approve(platform, customers[index],
                                                              operators[(first_operator + number) % APPROVERS],
                                                              chain_of[index], api_statuses)
                                          for number, index in enumerate(indexes)))
            withdrawals.extend((withdrawal_id, destination, chain_of[index])
                               for (withdrawal_id, destination), index in zip(made, indexes, strict=True))

        await withdraw(first_half)
        done.append(("withdrawals", f"{len(first_half)} requested and approved at {at()}"))
        funding = asyncio.create_task(fund(range(CUSTOMERS, 35)))
        platform.kill("custody-1")
        faults.append(("SIGKILL custody-1", f"{at()}: custody-2 carries on alone"))
        leading = {name: await asyncio.to_thread(leads, port) for name, port in schedulers.items()}
        leader = next(name for name, answer in leading.items() if answer)
        other = next(name for name in schedulers if name != leader)
        killed_at = platform.kill(leader)

        async def other_leads() -> bool:
            return await asyncio.to_thread(leads, schedulers[other]) is True

        await platform.wait_for(other_leads, f"{other} leading")
        faults.append((f"SIGKILL {leader} (leader)", f"{at()}: {other} leads {time.monotonic() - killed_at:.1f}s later"))
        await funding

        # 3. More approved; RabbitMQ stops under their messages; while it is down, customers read their
        # balances and the last four withdrawals are requested and approved; then it starts again.
        before, during = second_half[:6], second_half[6:]
        await withdraw(before)
        done.append(("withdrawals", f"{len(before)} more requested and approved at {at()}"))
        funding = asyncio.create_task(fund(range(35, DEPOSITS)))
        stopped_at = time.monotonic()
        await asyncio.to_thread(rabbitmq.stop)
        read_statuses: Counter[int] = Counter()
        reads_done = asyncio.Event()
        reading = asyncio.create_task(reads_meanwhile(platform, customers[0], read_statuses, reads_done))
        await withdraw(during, first_operator=len(before))
        done.append(("withdrawals", f"{len(during)} more requested and approved while RabbitMQ is down, at {at()}"))
        await asyncio.sleep(1)  # reads while it is down, beside the requests
        await asyncio.to_thread(rabbitmq.start)
        await asyncio.sleep(1)  # and reads while the clients meet the new node
        reads_done.set()
        await reading
        faults.append(("RabbitMQ stop, start", (f"{at()}: down and up again in {time.monotonic() - stopped_at:.1f}s;"
                                                f" reads meanwhile {dict(sorted(read_statuses.items()))}")))
        assert set(read_statuses) <= {200, 503}, read_statuses
        await funding
        on_ethereum = sum(chain_of[index % CUSTOMERS] is CHAINS[0] for index in range(DEPOSITS))
        done.append(("deposits", f"{DEPOSITS} sent ({on_ethereum} on ethereum, the rest on polygon), the last at {at()}"))

        # 4. An API process dies under customers' reads; the orchestrator starts it again on its port.
        read_statuses = Counter()
        reads_done = asyncio.Event()
        failovers = platform.failovers
        reading = asyncio.create_task(reads_meanwhile(platform, customers[1], read_statuses, reads_done))
        await asyncio.sleep(0.5)
        killed_at = platform.kill("api-b")
        port = platform.clusters[1].api_url.rsplit(":", 1)[1]
        restarted = platform.main.start("api-b-restarted", ["api"], {**platform.main.env, "VIRTUOZ_API_PORT": port})
        assert restarted.alive()
        await platform.clusters[1].wait_ready()
        reads_done.set()
        await reading
        faults.append(("SIGKILL api-b, restarted", (f"{at()}: answering again {time.monotonic() - killed_at:.1f}s"
                                                    f" later; reads meanwhile {dict(sorted(read_statuses.items()))},"
                                                    f" {platform.failovers - failovers} sent on to api-a")))
        assert set(read_statuses) == {200}, read_statuses

        # 5. Everything settles.
        ids = [withdrawal_id for withdrawal_id, _, _ in withdrawals]

        async def all_final() -> bool:
            rows = await platform.query("SELECT state FROM withdrawals WHERE id = ANY($1::uuid[])", ids)
            return len(rows) == len(ids) and all(row["state"] in ("confirmed", "failed", "rolled_back") for row in rows)

        await platform.wait_for(all_final, f"{len(ids)} withdrawals final")
        await platform.wait_for(lambda: credited(DEPOSITS), f"{DEPOSITS} deposits credited")
        done.append(("settled", f"at {at()}"))

        # Deposits: each credited once.
        deposits = await platform.query(
            "SELECT d.id, d.chain, d.state, count(t.id) AS credits FROM deposits d LEFT JOIN ledger_transfers t"
            " ON t.reference_kind = 'deposit' AND t.reference_id = d.id::text AND t.type = 'deposit' GROUP BY d.id")
        found.append(("deposits", (f"{len(deposits)} rows, states {sorted({row['state'] for row in deposits})},"
                                   f" credited once {sum(row['credits'] == 1 for row in deposits)}/{len(deposits)}")))
        assert len(deposits) == DEPOSITS, deposits
        assert all(row["state"] == "credited" and row["credits"] == 1 for row in deposits), deposits

        # Withdrawals: each confirmed once, its transaction mined, its destination paid once.
        rows = await platform.query("SELECT id::text AS id, chain, state, tx_hash, nonce,"
                                    " extract(epoch FROM finished_at - created_at) AS took FROM withdrawals"
                                    " WHERE id = ANY($1::uuid[]) ORDER BY took", ids)
        took = [float(row["took"] or 0) for row in rows]
        found.append(("withdrawals", (f"{len(rows)} rows, states {sorted({row['state'] for row in rows})}; request to"
                                      f" final {took[0]:.1f}s min, {took[len(took) // 2]:.1f}s median, {took[-1]:.1f}s max")))
        found.append(("API answers (withdrawals)", f"{dict(sorted(api_statuses.items()))}"))
        assert [row["state"] for row in rows] == ["confirmed"] * len(ids), rows
        assert len({row["tx_hash"] for row in rows}) == len(ids)
        paid = 0
        for withdrawal_id, destination, chain in withdrawals:
            web3 = platform.web3(chain.name)
            row = next(row for row in rows if row["id"] == withdrawal_id)
            receipt = await asyncio.to_thread(web3.eth.get_transaction_receipt, row["tx_hash"])
            assert receipt["status"] == 1, receipt
            balance = await asyncio.to_thread(web3.eth.get_balance, destination)
            assert balance == int(Decimal(chain.withdrawal) * 10**18), (withdrawal_id, balance)
            paid += 1
        found.append(("destinations paid once", f"{paid}/{len(ids)}, every receipt status 1"))

        for chain in CHAINS:
            nonces = await asyncio.to_thread(hot_wallet_nonces, platform.web3(chain.name), platform.hot_wallets[chain.name])
            found.append((f"hot wallet nonces {chain.name}", (f"{len(nonces)} mined, {nonces[0] if nonces else '-'}"
                                                              f"…{nonces[-1] if nonces else '-'}, no gap, no repeat")))
            assert nonces == list(range(len(nonces))), nonces
            assert len(nonces) >= sum(item[2] is chain for item in withdrawals)

        twice = await platform.query("SELECT job, period, count(*) AS n FROM scheduled_runs GROUP BY job, period"
                                     " HAVING count(*) > 1")
        runs = await platform.query("SELECT count(*) AS n, count(DISTINCT fired_by) AS replicas FROM scheduled_runs")
        found.append(("scheduled_runs", (f"{runs[0]['n']} (job, period) rows by {runs[0]['replicas']} schedulers,"
                                         f" {len(twice)} twice")))
        assert twice == [], twice

        # The queues were RabbitMQ's: Redis holds none of Dramatiq's keys, only the claims kept beside them.
        client = redis.Redis.from_url(platform.redis.url())
        try:
            in_redis = [key for key in client.keys("dramatiq:*") if b":inflight:" not in key]
        finally:
            client.close()
        found.append(("Dramatiq keys in Redis", f"{len(in_redis)}"))
        assert in_redis == [], in_redis

        for command in (["ledger", "verify"], ["audit", "verify"]):
            result = await asyncio.to_thread(subprocess.run, [sys.executable, "-m", "cli", *command],
                                             env=platform.main.env, cwd=REPO_ROOT, capture_output=True, text=True,
                                             timeout=120)
            found.append((" ".join(command), "OK" if result.returncode == 0 else f"FAILED: {result.stdout[-300:]}"))
            assert result.returncode == 0, result.stdout + result.stderr

        logs = {path.stem: path.read_text(errors="replace")
                for path in sorted((platform.main.data_dir / "logs").glob("*.log"))}
        for event, text in LOG_EVENTS.items():
            seen = {name: count for name, log in logs.items() if (count := log.count(text))}
            found.append((f"logged: {event}", f"{seen or 'none'}"))
        deadlocks = {name: count for name, log in logs.items() if (count := log.count("DeadlockDetectedError"))}
        platform.main.check_alive()
        # Last, so that a failure here still shows everything above: a customer never gets a 500.
        assert 500 not in api_statuses, (f"the API answered 500 to {api_statuses[500]} withdrawal calls"
                                         f" (deadlocks logged: {deadlocks})")
        done.append(("total", f"{time.monotonic() - began:.1f}s from the first /health"))
    finally:  # what it did and saw, passed or not
        print("\n== scale-out: done")
        for name, what in done:
            print(f"  {name:<28} {what}")
        print("== faults")
        for name, what in faults:
            print(f"  {name:<28} {what}")
        print("== found")
        for name, what in found:
            print(f"  {name:<28} {what}")
        print("== processes at the end")
        print("  " + ", ".join(sorted(platform.main.processes)))
