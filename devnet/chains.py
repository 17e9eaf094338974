"""The devnet's local EVM chains: Anvil processes whose state survives restarts, and USDC on them.

Set-up code, not a service: it uses web3's synchronous client and blocks while it waits.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import signal
import subprocess
import tempfile
import urllib.request
from pathlib import Path
from typing import Any

from eth_account import Account
from web3 import HTTPProvider, Web3

from devnet.processes import ManagedProcess

log = logging.getLogger(__name__)

DEPLOY_DIR = Path(__file__).resolve().parent.parent / "deploy" / "devnet"
NODE_MODULES = DEPLOY_DIR / "node_modules"
ANVIL_BIN = NODE_MODULES / "@foundry-rs" / "anvil-linux-amd64" / "bin" / "anvil"
SOLCJS_BIN = NODE_MODULES / ".bin" / "solcjs"
USDC_SOURCE = DEPLOY_DIR / "contracts" / "USDC.sol"

# Anvil's default accounts ("test test … junk" mnemonic). Public knowledge, so devnet only:
# account 0 is the faucet that deploys tokens and funds test users.
ANVIL_DEV_KEYS: tuple[str, ...] = (
    "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80",
    "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d",
    "0x5de4111afa1a4b94908f83103eb1f1706367c2e68ca870fc3fb9a804cdab365a",
    "0x7c852118294e51e653712a81e05800f419141751be58f605c371e15141b007a6",
    "0x47e179ec197488593b187f80a00eb0da91f1b9d0b13f8733639f19c30a34926a",
)
FAUCET_KEY = ANVIL_DEV_KEYS[0]
# The devnet's cold wallet on every chain: Anvil's dev account 9 of the same public mnemonic, never
# part of the signer's seed. Devnet only — a real cold wallet's key never touches the platform; here
# devnet.json hands it out so anyone can play the cold custodian and sign a refill offline.
DEVNET_COLD_WALLET_KEY = "0x2a871d0798f97d79848a013d4936a73bf4cc922c825d33c1cf7073dff6d409c6"

# Anvil dumps its state on SIGTERM and on SIGINT alike (checked on 1.7.1); SIGTERM is also what
# PR_SET_PDEATHSIG delivers, so the chain is saved even when the devnet itself is killed.
_STOP_SIGNAL = signal.SIGTERM
# Periodic dumps bound what a crash (SIGKILL, power loss) can lose to this many seconds.
_PERSISTED_STATES = 64
_STATE_INTERVAL_SECONDS = 10


class DevnetToolingMissing(RuntimeError):
    """The npm-installed chain tooling (anvil, solcjs) is not there."""


def _require(tool: Path) -> Path:
    if not tool.exists():
        raise DevnetToolingMissing(
            f"{tool} not found: run `npm ci` in {DEPLOY_DIR} to install anvil and solc"
        )
    return tool


def compile_usdc(cache_dir: Path) -> dict[str, Any]:
    """USDC's ABI and creation bytecode, compiled once per source version (solcjs takes seconds)."""
    source = USDC_SOURCE.read_bytes()
    cached = cache_dir / f"usdc-{hashlib.sha256(source).hexdigest()}.json"
    if cached.exists():
        return json.loads(cached.read_text())

    solcjs = _require(SOLCJS_BIN)
    with tempfile.TemporaryDirectory(prefix="solcjs-") as out:
        # solcjs names outputs after the path it was given, so run it beside the source.
        result = subprocess.run(
            [str(solcjs), "--bin", "--abi", "--optimize", "-o", out, USDC_SOURCE.name],
            cwd=USDC_SOURCE.parent,
            capture_output=True,
            text=True,
            timeout=120,
        )
        if result.returncode != 0:
            raise RuntimeError(f"solcjs failed to compile {USDC_SOURCE}:\n{result.stderr or result.stdout}")
        out_dir = Path(out)
        artifact = {
            "abi": json.loads(next(out_dir.glob("*_USDC.abi")).read_text()),
            "bytecode": "0x" + next(out_dir.glob("*_USDC.bin")).read_text().strip(),
        }
    _write_json_atomically(cached, artifact)
    return artifact


class AnvilChain:
    """One local EVM chain, mining a block every ``block_time`` seconds, resumable from ``data_dir``."""

    def __init__(
        self,
        name: str,
        chain_id: int,
        port: int,
        data_dir: Path,
        *,
        block_time: float = 1.0,
        log_dir: Path,
    ) -> None:
        self.name = name
        self.chain_id = chain_id
        self.port = port
        self.data_dir = data_dir.resolve()
        self.block_time = block_time
        self.log_dir = log_dir.resolve()
        self.process: ManagedProcess | None = None

    @property
    def rpc_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def state_file(self) -> Path:
        return self.data_dir / "state.json"

    def start(self, timeout: float = 30) -> AnvilChain:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        argv = [
            str(_require(ANVIL_BIN)),
            "--host", "127.0.0.1",
            "--port", str(self.port),
            "--chain-id", str(self.chain_id),
            # Interval mining, like a real chain: blocks (and confirmations) come without traffic.
            "--block-time", str(self.block_time),
            # --state loads the file if present and dumps to it on exit; the interval covers crashes.
            "--state", str(self.state_file),
            "--state-interval", str(_STATE_INTERVAL_SECONDS),
            # Past its in-memory window Anvil writes every block's state to disk (hundreds of KB
            # each) and leaves them there when killed: cap them, and keep them in our data dir.
            "--max-persisted-states", str(_PERSISTED_STATES),
            "--cache-path", str(self.data_dir / "states"),
        ]
        self.process = ManagedProcess(
            f"anvil-{self.name}",
            argv,
            log_path=self.log_dir / f"anvil-{self.name}.log",
            stop_signal=_STOP_SIGNAL,
        ).start()
        try:
            self.process.wait_until(self._answers, timeout)
        except BaseException:
            self.process.stop()
            raise
        log.info("chain %s (id %s) at %s", self.name, self.chain_id, self.rpc_url)
        return self

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()

    def _answers(self) -> bool:
        try:
            chain_id = _rpc(self.rpc_url, "eth_chainId", [], timeout=1.0)
        except (OSError, ValueError):
            return False
        if int(chain_id, 16) != self.chain_id:
            # Something else (a stale anvil?) owns the port: waiting longer will not fix it.
            raise RuntimeError(f"{self.rpc_url} answers chain id {int(chain_id, 16)}, expected {self.chain_id}")
        return True


def deploy_usdc(rpc_url: str, artifact: dict[str, Any], state_file: Path) -> str:
    """USDC's checksum address on the chain at ``rpc_url``, deploying it only if not there yet."""
    w3 = Web3(HTTPProvider(rpc_url, request_kwargs={"timeout": 10}))
    # Keyed by chain id, not URL: ports change between runs, the chain's identity does not.
    chain_key = str(w3.eth.chain_id)
    recorded = _read_json(state_file)
    address = recorded.get(chain_key, {}).get("USDC")
    # The address alone proves nothing: the chain's data dir may have been wiped since.
    if address and w3.eth.get_code(Web3.to_checksum_address(address)):
        return Web3.to_checksum_address(address)

    faucet = Account.from_key(FAUCET_KEY)
    contract = w3.eth.contract(abi=artifact["abi"], bytecode=artifact["bytecode"])
    transaction = contract.constructor().build_transaction(
        {"from": faucet.address, "nonce": w3.eth.get_transaction_count(faucet.address, "pending")}
    )
    signed = faucet.sign_transaction(transaction)
    tx_hash = w3.eth.send_raw_transaction(signed.raw_transaction)
    receipt = w3.eth.wait_for_transaction_receipt(tx_hash, timeout=60, poll_latency=0.1)
    if receipt["status"] != 1 or not receipt["contractAddress"]:
        raise RuntimeError(f"USDC deployment {tx_hash.to_0x_hex()} failed on {rpc_url}")

    address = Web3.to_checksum_address(receipt["contractAddress"])
    recorded.setdefault(chain_key, {})["USDC"] = address
    _write_json_atomically(state_file, recorded)
    log.info("deployed USDC at %s on chain %s", address, chain_key)
    return address


def fund_wallet(rpc_url: str, address: str, artifact: dict[str, Any], usdc: str, *, native_wei: int,
                usdc_minor: int) -> None:
    """Top ``address`` up from the faucet to ``native_wei`` of the native coin and ``usdc_minor`` USDC.

    Withdrawals: the hot wallet pays withdrawals and their gas. Idempotent: a restart
    finds the wallet funded and sends nothing; a wallet that spent some is topped up again.
    """
    w3 = Web3(HTTPProvider(rpc_url, request_kwargs={"timeout": 10}))
    faucet = Account.from_key(FAUCET_KEY)
    address = Web3.to_checksum_address(address)
    chain_id = w3.eth.chain_id
    nonce = w3.eth.get_transaction_count(faucet.address, "pending")
    base_fee = w3.eth.get_block("latest").get("baseFeePerGas", 10**9)
    fees = {"maxFeePerGas": 2 * base_fee + 10**9, "maxPriorityFeePerGas": 10**9, "chainId": chain_id, "type": 2}
    sent = []
    shortfall = native_wei - w3.eth.get_balance(address)
    if shortfall > 0:
        transaction = {"to": address, "value": shortfall, "gas": 21_000, "nonce": nonce, **fees}
        sent.append(w3.eth.send_raw_transaction(faucet.sign_transaction(transaction).raw_transaction))
        nonce += 1
    token = w3.eth.contract(address=Web3.to_checksum_address(usdc), abi=artifact["abi"])
    missing = usdc_minor - token.functions.balanceOf(address).call()
    if missing > 0:
        transaction = token.functions.mint(address, missing).build_transaction(
            {"from": faucet.address, "nonce": nonce, "gas": 100_000, **fees})
        sent.append(w3.eth.send_raw_transaction(faucet.sign_transaction(transaction).raw_transaction))
    for tx_hash in sent:
        receipt = w3.eth.wait_for_transaction_receipt(tx_hash, timeout=60, poll_latency=0.1)
        if receipt["status"] != 1:
            raise RuntimeError(f"funding {address} failed on {rpc_url}: {tx_hash.to_0x_hex()}")
    if sent:
        log.info("funded %s on chain %s", address, chain_id)


def _rpc(url: str, method: str, params: list[Any], *, timeout: float) -> Any:
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": method, "params": params}).encode()
    request = urllib.request.Request(url, body, {"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=timeout) as response:
        answer = json.loads(response.read())
    if "error" in answer:
        raise ValueError(f"{method} failed: {answer['error']}")
    return answer["result"]


def _read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return {}


def _write_json_atomically(path: Path, data: dict[str, Any]) -> None:
    # A crash mid-write must leave the old file, never half a JSON document.
    path.parent.mkdir(parents=True, exist_ok=True)
    scratch = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    scratch.write_text(json.dumps(data, indent=2))
    os.replace(scratch, path)


__all__ = [
    "ANVIL_DEV_KEYS",
    "DEVNET_COLD_WALLET_KEY",
    "FAUCET_KEY",
    "AnvilChain",
    "DevnetToolingMissing",
    "compile_usdc",
    "deploy_usdc",
    "fund_wallet",
]
