"""`virtuoz devnet`: the whole platform on one machine, in one process tree.

Start order: PostgreSQL (+ migrations) → Redis → Anvil chains (+ USDC) → workers, scheduler, API.
``devnet.json`` is written only once `/readiness` answers 200, and removed on the way out; a
SIGINT or SIGTERM stops every child in reverse order. A child that exits during start-up stops the
devnet; one that crashes later is restarted with backoff (``devnet.supervision``). The data directory keeps the database,
Redis's append-only file and each chain's state, so the next start resumes where this one stopped.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import signal
import sys
import time
import urllib.request
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from eth_account import Account

from compliance.travel_rule.tls import ensure_devnet_pki
from core.migrate import upgrade
from core.settings import ChainSettings, Environment, Settings, SettingsError, VaspIdentity
from core.sign_requests import load_signer_public_key
from custody.hd import load_xpubs
from custody.withdrawals.authorization import ensure_request_key_pair
from devnet.chains import ANVIL_DEV_KEYS, DEVNET_COLD_WALLET_KEY, AnvilChain, compile_usdc, deploy_usdc, fund_wallet
from devnet.content import ensure_demo_content
from devnet.processes import ManagedProcess, free_port, port_open, stop_all
from devnet.servers import EmbeddedPostgres, EmbeddedRedis
from devnet.supervision import Supervisor
from devnet.users import ensure_demo_users
from signer.derivation import ChainKeys
from signer.keystore import DEVNET_PASSPHRASE, MIN_SCRYPT_N, init_keystore, keystore_path, reexport

log = logging.getLogger(__name__)

DATABASE = "virtuoz"
DEVNET_SANDBOX_CREDIT = "USD:10000.00"
READY_TIMEOUT = 90.0
# Withdrawals: what the faucet keeps in each chain's hot wallet, and the sanctions list.
HOT_WALLET_NATIVE_WEI = 1_000 * 10**18
HOT_WALLET_USDC_MINOR = 1_000_000 * 10**6
DEVNET_SANCTIONS_LIST = Path(__file__).resolve().parent.parent / "deploy" / "devnet" / "sanctions.txt"


@dataclass(frozen=True)
class DevnetChain:
    name: str
    chain_id: int
    native: str
    confirmations: int


DEVNET_CHAINS = (
    DevnetChain("ethereum", 31337, "ETH", confirmations=3),
    DevnetChain("polygon", 31338, "POL", confirmations=2),
)
# The processes that exist so far; later issues add the scanner. Only the signer is given the
# keystore passphrase (see run_devnet).
SERVICES = (
    ("signer", ["signer"]),
    ("worker-custody", ["worker", "custody"]),
    ("worker-deposits", ["worker", "deposits"]),
    ("worker-compliance", ["worker", "compliance"]),
    ("worker-notifications", ["worker", "notifications"]),
    ("worker-allocator", ["worker", "allocator"]),
    # Treasury: sweeps of deposit addresses to the hot wallet (and the other treasury jobs).
    ("worker-treasury", ["worker", "treasury"]),
    # Webhooks: signed POSTs of the outbox's events to integrators' endpoints, retried.
    ("worker-webhooks", ["worker", "webhooks"]),
    ("scheduler", ["scheduler"]),
    # Travel Rule: the TRP endpoints of both devnet VASP identities, over mTLS.
    ("trp", ["trp", "serve"]),
    # Deposits: one scanner per chain.
    *((f"scanner-{chain.name}", ["scanner", "--chain", chain.name]) for chain in DEVNET_CHAINS),
    ("api", ["api"]),
)


def devnet_vasps(settings: Settings) -> list[VaspIdentity]:
    """The configured identities, plus a second one (a counterparty VASP) if only one is configured:
    two identities on one devnet exchange real TRP messages over mutual TLS."""
    identities = list(settings.travel_rule_identities)
    if len(identities) == 1:
        first = identities[0]
        identities.append(VaspIdentity(name="counterparty", legal_name="Counterparty VASP Ltd (devnet)",
                                       country="DE", host=first.host, port=first.port + 1))
    return identities


class DevnetStopped(Exception):
    """A SIGINT or SIGTERM arrived: unwind and stop every child."""


def _raise_stop(signum: int, frame: Any) -> None:
    # Once: a second Ctrl-C must not interrupt the orderly stop it asked for.
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, signal.SIG_IGN)
    raise DevnetStopped(signal.Signals(signum).name)


def _lock(data_dir: Path) -> Any:
    lock = open(data_dir / "devnet.lock", "w")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        raise SystemExit(f"virtuoz devnet: another devnet is running on {data_dir}") from None
    return lock


def _wait_ready(api_url: str, children: list[ManagedProcess], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    last = "no answer yet"
    while time.monotonic() < deadline:
        for child in children:
            if not child.alive():
                raise RuntimeError(f"{child.name} exited during start-up; see {child.log_path}:\n{child.tail()}")
        try:
            with urllib.request.urlopen(f"{api_url}/readiness", timeout=5) as response:
                if response.status == 200:
                    return
        except urllib.error.HTTPError as error:
            last = error.read().decode(errors="replace")
        except OSError as error:
            last = str(error)
        time.sleep(0.25)
    raise TimeoutError(f"the platform was not ready after {timeout:.0f}s: {last}")


def _write_atomically(path: Path, document: dict[str, Any]) -> None:
    temporary = path.with_suffix(".tmp")
    temporary.write_text(json.dumps(document, indent=2) + "\n")
    os.replace(temporary, path)


def run_devnet(settings: Settings) -> int:
    if settings.is_production:
        # Its children inherit the environment it names: a devnet is never a production process.
        raise SettingsError("virtuoz devnet runs with VIRTUOZ_ENV=devnet (or test), as `make devnet` sets it")
    data_dir = settings.data_dir.resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    logs = data_dir / "logs"
    manifest = data_dir / "devnet.json"
    started = time.monotonic()
    previous = {sig: signal.signal(sig, _raise_stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        with ExitStack() as stack:
            stack.enter_context(_lock(data_dir))
            manifest.unlink(missing_ok=True)
            stack.callback(manifest.unlink, missing_ok=True)

            postgres = EmbeddedPostgres(data_dir / "postgres", settings.devnet_postgres_port, log_dir=logs).start()
            stack.callback(postgres.stop)
            postgres.create_database(DATABASE)
            database_url = postgres.url(DATABASE)
            upgrade(database_url)
            users = ensure_demo_users(database_url, data_dir, settings.sandbox_credit or DEVNET_SANDBOX_CREDIT)
            ensure_demo_content(database_url)  # CMS starter content, never overwritten

            redis = EmbeddedRedis(data_dir / "redis", settings.devnet_redis_port, log_dir=logs).start()
            stack.callback(redis.stop)

            artifact = compile_usdc(data_dir / "build")
            chains: list[ChainSettings] = []
            anvils = [
                AnvilChain(spec.name, spec.chain_id, settings.devnet_chain_ports[spec.name], data_dir / "chains" / spec.name,
                           block_time=settings.devnet_block_time, log_dir=logs)
                for spec in DEVNET_CHAINS
            ]
            for anvil in anvils:
                anvil.start()
                stack.callback(anvil.stop)
            # Each chain its own BIP44 account (0, 1, ...): an address is a deposit address on one chain only.
            for account, (spec, anvil) in enumerate(zip(DEVNET_CHAINS, anvils, strict=True)):
                usdc = deploy_usdc(anvil.rpc_url, artifact, data_dir / "chains" / "contracts.json")
                chains.append(ChainSettings(name=spec.name, chain_id=spec.chain_id, rpc_url=anvil.rpc_url,
                                            native=spec.native, confirmations=spec.confirmations,
                                            tokens={"USDC": usdc}, account=account,
                                            cold_wallet=Account.from_key(DEVNET_COLD_WALLET_KEY).address))
            keystore_dir, xpub_file, public_key_file = _ensure_devnet_keystore(settings, data_dir, chains)
            # Withdrawals: the custody request key pair, and hot wallets the faucet keeps funded.
            ensure_request_key_pair(data_dir / "custody-request-key.pem", data_dir / "custody-request-key.pub")
            xpubs = load_xpubs(xpub_file, load_signer_public_key(public_key_file))
            for chain in chains:
                fund_wallet(chain.rpc_url, xpubs[chain.name].hot_wallet, artifact, chain.tokens["USDC"],
                            native_wei=HOT_WALLET_NATIVE_WEI, usdc_minor=HOT_WALLET_USDC_MINOR)

            # Outgoing email lands here as .eml files; started before the workers that send it.
            smtp_host, mail_dir = "127.0.0.1", data_dir / "mail"
            smtp = ManagedProcess("smtp", [sys.executable, "-m", "devnet.smtp", "--host", smtp_host, "--port",
                                           str(settings.devnet_smtp_port), "--maildir", str(mail_dir)],
                                  log_path=logs / "smtp.log").start()
            stack.callback(smtp.stop)
            smtp.wait_until(lambda: port_open(settings.devnet_smtp_port, smtp_host))

            # Travel Rule: the devnet's own CA and a certificate per VASP identity, made once.
            vasps = devnet_vasps(settings)
            pki_dir = settings.travel_rule_pki_dir.resolve() if settings.travel_rule_pki_dir else data_dir / "trp-pki"
            ensure_devnet_pki(pki_dir, [vasp.name for vasp in vasps], ["127.0.0.1", "localhost"])

            env = {
                # The passphrase reaches the signer alone (below), whatever this shell exported.
                **{name: value for name, value in os.environ.items() if name != "VIRTUOZ_SIGNER_PASSPHRASE"},
                "VIRTUOZ_ENV": settings.env.value,
                "VIRTUOZ_DATA_DIR": str(data_dir),
                "VIRTUOZ_DATABASE_URL": database_url,
                "VIRTUOZ_REDIS_URL": redis.url(),
                "VIRTUOZ_CHAINS": json.dumps([chain.model_dump() for chain in chains]),
                "VIRTUOZ_API_PORT": str(settings.api_port),
                "VIRTUOZ_API_WORKERS": str(settings.api_workers),
                "VIRTUOZ_SMTP_HOST": smtp_host,
                "VIRTUOZ_SMTP_PORT": str(settings.devnet_smtp_port),
                "VIRTUOZ_SIGNER_KEYSTORE_DIR": str(keystore_dir),
                "VIRTUOZ_XPUB_FILE": str(xpub_file),
                "VIRTUOZ_SIGNER_PUBLIC_KEY_FILE": str(public_key_file),
                "VIRTUOZ_SANCTIONS_LIST_FILE": str(settings.sanctions_list_file or DEVNET_SANCTIONS_LIST),
                # The signer's own copy of the cold wallets: the only place it sends a hot wallet's surplus.
                "VIRTUOZ_SIGNER_COLD_WALLETS": json.dumps({chain.name: chain.cold_wallet for chain in chains}),
                # Play money so the seed's examples (fund an 8000.00 USD escrow) work on a fresh devnet.
                "VIRTUOZ_SANDBOX_CREDIT": settings.sandbox_credit or DEVNET_SANDBOX_CREDIT,
                "VIRTUOZ_TRAVEL_RULE_IDENTITIES": json.dumps([vasp.model_dump() for vasp in vasps]),
                "VIRTUOZ_TRAVEL_RULE_PKI_DIR": str(pki_dir),
            }
            children: list[ManagedProcess] = []
            stack.callback(stop_all, children)  # the platform's processes stop side by side
            passphrase = settings.signer_passphrase.get_secret_value() if settings.signer_passphrase else \
                DEVNET_PASSPHRASE
            metrics = _metrics_ports(settings, [name for name, _ in SERVICES if name != "api"])
            for name, argv in SERVICES:
                child_env = {**env, "VIRTUOZ_SIGNER_PASSPHRASE": passphrase} if name == "signer" else env
                if name in metrics:
                    child_env = {**child_env, "VIRTUOZ_METRICS_PORT": str(metrics[name])}
                children.append(ManagedProcess(name, [sys.executable, "-m", "cli", *argv], env=child_env,
                                               log_path=logs / f"{name}.log").start())

            api_url = f"http://{settings.api_host}:{settings.api_port}"
            _wait_ready(api_url, children, READY_TIMEOUT)
            document = {
                "api_url": api_url,
                "api_workers": settings.api_workers,
                "docs_url": f"{api_url}/docs",
                "database_url": database_url,
                "redis_url": redis.url(),
                "smtp": {"host": smtp_host, "port": settings.devnet_smtp_port, "maildir": str(mail_dir)},
                "chains": [
                    {**chain.model_dump(), "faucet_private_key": ANVIL_DEV_KEYS[0],
                     "hot_wallet": xpubs[chain.name].hot_wallet,
                     # cold_wallet (from the chain's settings) is watch-only; its key is here on devnet only.
                     "cold_wallet_private_key": DEVNET_COLD_WALLET_KEY} for chain in chains
                ],
                "users": users,
                "travel_rule": {"pki_dir": str(pki_dir), "identities": [
                    {"name": vasp.name, "legal_name": vasp.legal_name, "url": vasp.base_url} for vasp in vasps]},
                "metrics": {"api": f"{api_url}/metrics",
                            **{name: f"http://127.0.0.1:{port}/metrics" for name, port in metrics.items()}},
                "logs": str(logs),
            }
            _write_atomically(manifest, document)
            _announce(document, time.monotonic() - started)
            Supervisor(children).run()  # restarts what crashes; returns only on a signal
            return 0
    except DevnetStopped as stop:
        log.info("devnet stopped by %s", stop)
        return 0
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _metrics_ports(settings: Settings, names: list[str]) -> dict[str, int]:
    base = settings.devnet_metrics_port
    return {name: base + index if base else free_port() for index, name in enumerate(names)}


def _ensure_devnet_keystore(settings: Settings, data_dir: Path, chains: list[ChainSettings]
                            ) -> tuple[Path, Path, Path]:
    """`virtuoz signer init` with the public devnet passphrase, once per data directory; later starts
    `virtuoz signer export` (a data dir from before signed exports gets them, deposit xpubs unchanged).

    Only on devnet: anywhere else the keystore is made by an operator with a passphrase of their own.
    """
    keystore_dir = (settings.signer_keystore_dir or data_dir / "signer").resolve()
    xpub_file = (settings.xpub_file or data_dir / "xpubs.json").resolve()
    public_key_file = (settings.signer_public_key_file or data_dir / "signer-key.pub").resolve()
    if settings.env is not Environment.DEVNET:
        return keystore_dir, xpub_file, public_key_file
    keys = [ChainKeys.of(chain) for chain in chains]
    if not keystore_path(keystore_dir).exists():
        # The minimum scrypt cost: the passphrase is public, a slower start protects nothing.
        init_keystore(keystore_dir, xpub_file, DEVNET_PASSPHRASE, keys, public_key_file=public_key_file,
                      scrypt_n=MIN_SCRYPT_N)
        log.info("devnet signer keystore created in %s; xpubs in %s", keystore_dir, xpub_file)
    else:
        passphrase = settings.signer_passphrase.get_secret_value() if settings.signer_passphrase else DEVNET_PASSPHRASE
        reexport(keystore_dir, xpub_file, public_key_file, passphrase, keys)
    return keystore_dir, xpub_file, public_key_file


def _announce(document: dict[str, Any], seconds: float) -> None:
    lines = [
        f"VirtuOZ devnet ready in {seconds:.1f}s",
        f"  API      {document['api_url']}/api/v1   (docs {document['docs_url']})",
        f"  status   {document['api_url']}/api/v1/status",
        f"  database {document['database_url']}",
        f"  redis    {document['redis_url']}",
        f"  smtp     {document['smtp']['host']}:{document['smtp']['port']}  (messages in {document['smtp']['maildir']})",
    ]
    for chain in document["chains"]:
        lines.append(f"  chain    {chain['name']} (id {chain['chain_id']}, {chain['native']}) {chain['rpc_url']}"
                     f"  USDC {chain['tokens']['USDC']}")
    for identity in document["travel_rule"]["identities"]:
        lines.append(f"  TRP      {identity['name']} ({identity['legal_name']}) {identity['url']}  (mTLS)")
    for user in document["users"]:
        lines.append(f"  login    {user['role']}: {user['email']} / {user['password']}")
    lines.append("  logs     " + document["logs"])
    lines.append("Ctrl-C stops everything.")
    print("\n".join(lines), flush=True)
