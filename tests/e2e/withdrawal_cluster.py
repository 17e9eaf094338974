"""The withdrawal path as real processes: API, custody worker, scheduler and signer on a fresh Anvil.

One cluster per test module (per pytest worker): its own database (on the session's PostgreSQL),
its own Redis, its own Anvil chain (0.2 s blocks, 1 confirmation) with USDC, a keystore made with
the public devnet passphrase (its exports: the signed xpub file and the signer public key, which
every process reads from the data dir), the custody request key pair, and a hot wallet funded by
the faucet.
"""

from __future__ import annotations

import asyncio
import functools
import json
import os
import signal
import sys
import time
import urllib.request
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
from web3 import HTTPProvider, Web3

from compliance.travel_rule.tls import ensure_devnet_pki
from core.migrate import upgrade
from core.sign_requests import load_signer_public_key
from custody.hd import load_xpubs
from custody.withdrawals.authorization import ensure_request_key_pair
from devnet.chains import AnvilChain, deploy_usdc, fund_wallet
from devnet.processes import ManagedProcess, free_port
from devnet.servers import EmbeddedPostgres, EmbeddedRedis
from signer.derivation import ChainKeys
from signer.keystore import DEVNET_PASSPHRASE, MIN_SCRYPT_N, init_keystore
from tests.factories import Totp

REPO_ROOT = Path(__file__).resolve().parents[2]
API = "/api/v1"
PASSWORD = "Correct-Horse-Battery-9"
CHAIN_ID = 31337
BLOCK_TIME = 0.2
STUCK_BLOCKS = 5
WAIT_TIMEOUT = 60.0
# The signer's own limits in this cluster: ETH single 5, so "over the limit" is easy to ask for.
SIGNER_LIMITS = {"ETH": {"decimals": 18, "single": "5", "daily": "80"},
                 "USDC": {"decimals": 6, "single": "100000", "daily": "1000000"}}
# What the API and the custody worker believe the signer's limits are: looser than its own (a
# signer whose limits were tightened), so a request passes the request-time check and the signer,
# the last word, refuses it.
CUSTODY_SIGNER_LIMITS = {**SIGNER_LIMITS, "ETH": {"decimals": 18, "single": "10", "daily": "80"}}
# On the signer's own sanctions list only: the API lets a withdrawal to it through, the signer refuses it.
SIGNER_ONLY_SANCTIONED = "0x9965507D1a55bcC2695C58ba16FB37d819B0A4dc"


@dataclass
class User:
    user_id: str
    email: str
    headers: dict[str, str]
    totp: Totp | None = None  # an approver's authenticator: every approval takes a fresh code


@dataclass
class Cluster:
    data_dir: Path
    database_url: str
    redis_url: str
    anvil: AnvilChain
    usdc: str
    usdc_abi: list[Any]
    hot_wallet: str
    api_url: str
    env: dict[str, str]
    vasps: list[dict[str, Any]]
    processes: dict[str, ManagedProcess] = field(default_factory=dict)

    @property
    def web3(self) -> Web3:
        return Web3(HTTPProvider(self.anvil.rpc_url, request_kwargs={"timeout": 10}))

    @functools.cached_property
    def signer_metrics_port(self) -> int:
        return free_port()

    def signer_metrics(self) -> str:
        url = f"http://127.0.0.1:{self.signer_metrics_port}/metrics"
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.read().decode()

    @property
    def journal_file(self) -> Path:
        return self.data_dir / "signer" / "journal.sqlite3"

    def start(self, name: str, argv: list[str], env: dict[str, str] | None = None) -> ManagedProcess:
        process = ManagedProcess(name, [sys.executable, "-m", "cli", *argv], env=env or self.env,
                                 log_path=self.data_dir / "logs" / f"{name}.log", cwd=REPO_ROOT).start()
        self.processes[name] = process
        return process

    def start_signer(self, *, pause_file: Path | None = None) -> ManagedProcess:
        """The signer; with ``pause_file`` it stops after journaling its first new signature, before
        answering, and writes that file: the window a crash test must hit."""
        # The passphrase goes to the signer's environment only; so do the signer's own (tighter) limits.
        env = {**self.env, "VIRTUOZ_SIGNER_PASSPHRASE": DEVNET_PASSPHRASE,
               "VIRTUOZ_SIGNER_LIMITS": json.dumps(SIGNER_LIMITS),
               "VIRTUOZ_METRICS_PORT": str(self.signer_metrics_port)}
        if pause_file is not None:
            env["VIRTUOZ_SIGNER_TEST_PAUSE_FILE"] = str(pause_file)
        return self.start("signer", ["signer"], env)

    def kill_signer(self) -> None:
        process = self.processes["signer"]
        assert process.process is not None
        process.process.send_signal(signal.SIGKILL)
        process.process.wait(10)

    def logs(self) -> str:
        return "\n".join(f"--- {name}\n{process.tail(40)}" for name, process in self.processes.items())

    def check_alive(self) -> None:
        for name, process in self.processes.items():
            assert process.alive(), f"{name} exited:\n{process.tail(60)}"

    # --- HTTP -----------------------------------------------------------------------------------

    async def call(self, method: str, path: str, headers: dict[str, str] | None = None,
                   json_body: Any = None) -> tuple[int, Any]:
        async with aiohttp.ClientSession() as http:
            async with http.request(method, f"{self.api_url}{API}{path}", headers=headers, json=json_body) as answer:
                return answer.status, await answer.json(content_type=None)

    async def user(self, *roles: str) -> User:
        email = f"w-{uuid.uuid4().hex[:12]}@example.com"
        status, created = await self.call("POST", "/auth/register",
                                          json_body={"email": email, "password": PASSWORD, "display_name": "W"})
        assert status == 201, created
        connection = await asyncpg.connect(self.database_url)
        try:
            # Verified, as a customer who withdraws must be (the verification itself is tested in
            # tests/integration/identity/test_email_verification.py); with ``roles`` instead of customer.
            await connection.execute("UPDATE users SET email_verified_at = now() WHERE id = $1",
                                     uuid.UUID(created["id"]))
            if roles:
                await connection.execute("UPDATE users SET roles = $1 WHERE id = $2", list(roles),
                                         uuid.UUID(created["id"]))
        finally:
            await connection.close()
        status, login = await self.call("POST", "/auth/login", json_body={"email": email, "password": PASSWORD})
        assert status == 200, login
        return User(created["id"], email, {"Authorization": f"Bearer {login['access_token']}"})

    async def approver(self, role: str = "operator") -> User:
        """An operator (or admin) with MFA on, as approving withdrawals requires."""
        approver = await self.user(role)
        status, enrolled = await self.call("POST", "/auth/mfa/enroll", approver.headers, {"password": PASSWORD})
        assert status in (200, 201), enrolled
        approver.totp = Totp(enrolled["secret"])
        status, verified = await self.call("POST", "/auth/mfa/verify", approver.headers,
                                           {"code": await approver.totp.code()})
        assert status == 200, verified
        return approver

    async def request(self, user: User, **fields: Any) -> dict[str, Any]:
        status, body = await self.call("POST", "/platform/crypto/withdrawals/request", user.headers, fields)
        assert status == 201, body
        return body

    async def approve(self, operator: User, withdrawal_id: str) -> dict[str, Any]:
        assert operator.totp is not None, "approvers have MFA: make them with Cluster.approver()"
        async with operator.totp.lock:  # one approver's codes reach the API in the order they were made
            status, body = await self.call("POST", f"/platform/crypto/withdrawals/{withdrawal_id}/sign",
                                           operator.headers, {"totp_code": await operator.totp.code()})
        assert status == 200, body
        return body

    async def approve_all(self, operators: list[User], withdrawal_ids: list[str]) -> None:
        """Approve at once, spread over several approvers: each code is good once per 30 s step."""
        await asyncio.gather(*(self.approve(operators[index % len(operators)], withdrawal_id)
                               for index, withdrawal_id in enumerate(withdrawal_ids)))

    async def withdrawal(self, user: User, withdrawal_id: str) -> dict[str, Any]:
        status, body = await self.call("GET", f"/platform/crypto/withdrawals/{withdrawal_id}", user.headers)
        assert status == 200, body
        return body

    async def wait_ready(self) -> None:
        async def healthy() -> bool:
            try:
                async with aiohttp.ClientSession() as http:
                    async with http.get(f"{self.api_url}/health") as answer:
                        return answer.status == 200
            except aiohttp.ClientError:
                return False

        await self.wait_for(healthy, "the API to answer /health")

    async def wait_for(self, condition: Callable[[], Awaitable[bool]], what: str,
                       timeout: float = WAIT_TIMEOUT) -> None:
        deadline = time.monotonic() + timeout
        while not await condition():
            self.check_alive()
            if time.monotonic() > deadline:
                raise AssertionError(f"{what}: not within {timeout:.0f}s\n{self.logs()}")
            await asyncio.sleep(0.2)

    async def wait_final(self, user: User, ids: list[str], timeout: float = WAIT_TIMEOUT) -> list[dict[str, Any]]:
        finals: dict[str, dict[str, Any]] = {}

        async def all_final() -> bool:
            for withdrawal_id in ids:
                if withdrawal_id not in finals:
                    body = await self.withdrawal(user, withdrawal_id)
                    if body["state"] in ("confirmed", "failed", "rolled_back"):
                        finals[withdrawal_id] = body
            return len(finals) == len(ids)

        await self.wait_for(all_final, f"{len(ids)} withdrawals to finish", timeout)
        return [finals[withdrawal_id] for withdrawal_id in ids]

    # --- chain and database ---------------------------------------------------------------------

    def rpc(self, method: str, *params: Any) -> Any:
        return self.web3.provider.make_request(method, list(params))  # type: ignore[arg-type]

    def usdc_balance(self, address: str) -> int:
        token = self.web3.eth.contract(address=Web3.to_checksum_address(self.usdc), abi=self.usdc_abi)
        return token.functions.balanceOf(Web3.to_checksum_address(address)).call()

    async def query(self, sql: str, *args: Any) -> list[asyncpg.Record]:
        connection = await asyncpg.connect(self.database_url)
        try:
            return await connection.fetch(sql, *args)
        finally:
            await connection.close()


def fresh_address() -> str:
    return Web3.to_checksum_address("0x" + uuid.uuid4().hex + uuid.uuid4().hex[:8])


@dataclass
class Ground:
    """What every cluster stands on: its data dir, database, Redis, Anvil with USDC, the signer's
    keystore and exports, the custody request key pair, and a funded hot wallet."""

    data_dir: Path
    database_url: str
    redis: EmbeddedRedis
    anvil: AnvilChain
    usdc: str
    hot_wallet: str

    def cluster(self, artifact: dict[str, Any], api_url: str, env: dict[str, str],
                vasps: list[dict[str, Any]] | None = None) -> Cluster:
        cluster = Cluster(self.data_dir, self.database_url, self.redis.url(), self.anvil, self.usdc,
                          artifact["abi"], self.hot_wallet, api_url, env, vasps or [])
        cluster.redis_server = self.redis  # type: ignore[attr-defined]
        return cluster


def lay_ground(root: Path, postgres: EmbeddedPostgres, artifact: dict[str, Any], *, database_prefix: str,
               native_wei: int, usdc_minor: int) -> Ground:
    data_dir = root / "data"
    (data_dir / "logs").mkdir(parents=True)
    database = f"{database_prefix}_{uuid.uuid4().hex[:8]}"
    postgres.create_database(database)
    database_url = postgres.url(database)
    upgrade(database_url)
    redis = EmbeddedRedis(root / "redis", free_port(), log_dir=data_dir / "logs").start()
    anvil = AnvilChain("ethereum", CHAIN_ID, free_port(), root / "anvil", block_time=BLOCK_TIME,
                       log_dir=data_dir / "logs").start()
    usdc = deploy_usdc(anvil.rpc_url, artifact, root / "contracts.json")
    xpub_file = data_dir / "xpubs.json"
    public_key_file = data_dir / "signer-key.pub"  # VIRTUOZ_SIGNER_PUBLIC_KEY_FILE's default in this data dir
    init_keystore(data_dir / "signer", xpub_file, DEVNET_PASSPHRASE, [ChainKeys.default("ethereum", 0)],
                  public_key_file=public_key_file, scrypt_n=MIN_SCRYPT_N)
    ensure_request_key_pair(data_dir / "custody-request-key.pem", data_dir / "custody-request-key.pub")
    hot_wallet = load_xpubs(xpub_file, load_signer_public_key(public_key_file))["ethereum"].hot_wallet
    fund_wallet(anvil.rpc_url, hot_wallet, artifact, usdc, native_wei=native_wei, usdc_minor=usdc_minor)
    return Ground(data_dir, database_url, redis, anvil, usdc, hot_wallet)


def build_cluster(root: Path, postgres: EmbeddedPostgres, artifact: dict[str, Any]) -> Cluster:
    ground = lay_ground(root, postgres, artifact, database_prefix="withdrawals", native_wei=500 * 10**18,
                        usdc_minor=10**12)
    data_dir, database_url, redis, anvil, usdc = (ground.data_dir, ground.database_url, ground.redis, ground.anvil,
                                                  ground.usdc)
    api_port = free_port()
    # Travel Rule: two VASP identities over mTLS, this platform's and a counterparty's.
    vasps = [{"name": "virtuoz", "legal_name": "VirtuOZ Test VASP", "port": free_port()},
             {"name": "counterparty", "legal_name": "Counterparty VASP Ltd", "country": "DE", "port": free_port()}]
    ensure_devnet_pki(data_dir / "trp-pki", [vasp["name"] for vasp in vasps], ["127.0.0.1"])
    devnet_sanctions = REPO_ROOT / "deploy" / "devnet" / "sanctions.txt"
    signer_sanctions = data_dir / "signer-sanctions.txt"
    signer_sanctions.write_text(devnet_sanctions.read_text() + f"\n{SIGNER_ONLY_SANCTIONED}\n")
    chains = [{"name": "ethereum", "chain_id": CHAIN_ID, "rpc_url": anvil.rpc_url, "native": "ETH",
               "confirmations": 1, "tokens": {"USDC": usdc}, "account": 0}]
    env = {
        **{name: value for name, value in os.environ.items() if not name.startswith("VIRTUOZ_")},
        "VIRTUOZ_ENV": "test",
        "VIRTUOZ_DATA_DIR": str(data_dir),
        "VIRTUOZ_DATABASE_URL": database_url,
        "VIRTUOZ_REDIS_URL": redis.url(),
        "VIRTUOZ_CHAINS": json.dumps(chains),
        "VIRTUOZ_API_PORT": str(api_port),
        "VIRTUOZ_API_WORKERS": "2",  # the multi-process API, whatever the number of cores
        "VIRTUOZ_LOG_JSON": "false",
        "VIRTUOZ_HEARTBEAT_INTERVAL_SECONDS": "1",
        "VIRTUOZ_SANDBOX_CREDIT": "ETH:100,USDC:100000",
        "VIRTUOZ_SANCTIONS_LIST_FILE": str(devnet_sanctions),
        "VIRTUOZ_SIGNER_SANCTIONS_LIST_FILE": str(signer_sanctions),
        "VIRTUOZ_WITHDRAWAL_TRACK_SECONDS": "0.5",
        "VIRTUOZ_WITHDRAWAL_RESEND_SECONDS": "2",
        "VIRTUOZ_WITHDRAWAL_STUCK_BLOCKS": str(STUCK_BLOCKS),
        # Longer than the stuck window here, so a dropped transaction is replaced by a fee bump (the
        # stuck-transaction test), not sent again first; re-broadcasts are tested at the worker level.
        "VIRTUOZ_WITHDRAWAL_REBROADCAST_BLOCKS": str(2 * STUCK_BLOCKS),
        "VIRTUOZ_WITHDRAWAL_TRAVEL_RULE_THRESHOLDS": json.dumps({"ETH": "50", "USDC": "1000"}),
        "VIRTUOZ_TRAVEL_RULE_IDENTITIES": json.dumps(vasps),
        "VIRTUOZ_WITHDRAWAL_FOUR_EYES_THRESHOLDS": json.dumps({"ETH": "50", "USDC": "100000"}),
        "VIRTUOZ_WITHDRAWAL_FEES": json.dumps({"ETH": "0.001", "USDC": "1"}),
        "VIRTUOZ_SIGNER_LIMITS": json.dumps(CUSTODY_SIGNER_LIMITS),
        "VIRTUOZ_KYC_WITHDRAWAL_LIMITS": "{}",  # the customers here are unverified (compliance.kyc.limits)
    }
    cluster = ground.cluster(artifact, f"http://127.0.0.1:{api_port}", env, vasps)
    cluster.start_signer()
    cluster.start("worker-custody", ["worker", "custody"])
    cluster.start("worker-compliance", ["worker", "compliance"])
    cluster.start("trp", ["trp", "serve"])
    cluster.start("scheduler", ["scheduler"])
    cluster.start("api", ["api"])
    return cluster


def stop_cluster(cluster: Cluster) -> None:
    for process in cluster.processes.values():
        process.signal_stop()
    for process in cluster.processes.values():
        process.wait_stopped(15)
    cluster.anvil.stop()
    cluster.redis_server.stop()  # type: ignore[attr-defined]
