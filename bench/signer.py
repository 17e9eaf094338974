"""Signer throughput: sign requests through the signer's full path vs. raw eth-account signing.

    .venv/bin/python bench/signer.py [--requests 1000] [--rounds 3] [--threads N]

The full path is what `virtuoz signer` does for each message, minus Redis: parse the canonical
request, verify the custody worker's Ed25519 authorization, read what the transaction pays
(native or ERC-20), check the journal (repeat? nonce taken? replacement?), sanctions and the
rolling 24 h limit, sign (``signer.transactions``: the bytes eth-account's ``sign_transaction``
gives, without its dict validation done twice), and commit the signature to the SQLite journal
with an fsync before answering. It runs as the daemon runs it: the requests of a chunk are handled by
a pool of ``SIGNER_THREADS`` threads (the daemon's Dramatiq worker threads), so that requests
arriving during an fsync share the next one (group commit). The baseline signs the same
transactions with eth-account's ``sign_transaction`` and nothing else, on one thread (the GIL
makes more pointless), in the same run, interleaved with the full path in chunks of 50 so that
both meet the same machine load. The ratio is the median of the rounds' ratios. Goal: ratio >= 0.5.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

# Run as a script, this file's folder comes first on sys.path, and this file is named like the
# `signer` package it measures: drop the folder so `import signer…` finds the package.
sys.path[:] = [entry for entry in sys.path if Path(entry or ".").resolve() != Path(__file__).resolve().parent]

from bip_utils import Bip32Secp256k1, Bip39SeedGenerator
from eth_account import Account

from core.sanctions import SanctionsList
from core.settings import ChainSettings, WithdrawalLimit
from core.sign_requests import UnsignedTx, erc20_transfer_data
from core.signing import generate_keypair, load_public_key
from custody.withdrawals.authorization import _parse, authorize
from signer.daemon import SIGNER_THREADS
from signer.journal import Journal
from signer.policy import Policy
from signer.derivation import hot_wallet_path
from signer.service import Signed, Signer

SEED = Bip39SeedGenerator("test test test test test test test test test test test junk").Generate("")
USDC = "0x5FbDB2315678afecb367f032d93F642f64180aa3"
CHAIN = ChainSettings(name="ethereum", chain_id=31337, rpc_url="http://127.0.0.1:1", native="ETH",
                      tokens={"USDC": USDC}, account=0)
CHUNK = 50
LIMITS = {"ETH": WithdrawalLimit(decimals=18, single="1000", daily="100000000"),
          "USDC": WithdrawalLimit(decimals=6, single="1000000", daily="100000000000")}


def requests(count: int, sender: str, start_nonce: int, private_pem: str) -> list[tuple[str, str, str]]:
    """(withdrawal_id, unsigned_tx, authorization): half native, half USDC, fresh nonces."""
    key = _parse(private_pem)
    made = []
    for index in range(count):
        destination = Account.create().address
        if index % 2:
            unsigned = UnsignedTx(31337, sender, start_nonce + index, USDC, 0, erc20_transfer_data(destination, 10**6),
                                  100_000, 3 * 10**9, 10**9)
        else:
            unsigned = UnsignedTx(31337, sender, start_nonce + index, destination, 10**15, "0x", 21_000,
                                  3 * 10**9, 10**9)
        withdrawal_id = str(uuid.uuid4())
        text = unsigned.canonical()
        made.append((withdrawal_id, text, authorize(key, withdrawal_id, text)))
    return made


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=SIGNER_THREADS, help="requests handled at once (the daemon's)")
    args = parser.parse_args()

    private_pem, public = generate_keypair()
    with tempfile.TemporaryDirectory(prefix="signer-bench-", dir=Path.cwd()) as directory:
        root = Path(directory)
        (root / "sanctions.txt").write_text("0x000000000000000000000000000000000000dEaD\n")
        policy = Policy([CHAIN], LIMITS, SanctionsList(root / "sanctions.txt"))
        journal = Journal(root / "journal.sqlite3")
        signer = Signer(SEED, [CHAIN], policy, journal, load_public_key(public))
        sender = signer.hot_wallet(31337)
        raw_account = Account.from_key(
            Bip32Secp256k1.FromSeed(SEED).DerivePath(hot_wallet_path(CHAIN.hot_account)).PrivateKey().Raw().ToBytes())
        assert raw_account.address == sender
        print(f"signer bench: {args.requests} requests x {args.rounds} rounds, {args.threads} at once "
              f"(journal on {root}, fsync per commit)")
        pool = ThreadPoolExecutor(args.threads, thread_name_prefix="signer")

        best = {"baseline": 0.0, "signer": 0.0}
        ratios: list[float] = []
        nonce = 0
        commits = journal.commits
        for round_number in range(args.rounds):
            batch = requests(args.requests, sender, nonce, private_pem)
            nonce += args.requests
            transactions = [UnsignedTx.parse(text).for_signing() for _, text, _ in batch]

            # Interleaved in chunks, so both sides meet the same machine load (CI shares its cores).
            baseline_seconds = full_seconds = 0.0
            for start in range(0, args.requests, CHUNK):
                started = time.perf_counter()
                for transaction in transactions[start:start + CHUNK]:
                    raw_account.sign_transaction(transaction)
                baseline_seconds += time.perf_counter() - started
                started = time.perf_counter()
                outcomes = list(pool.map(lambda request: signer.handle(*request), batch[start:start + CHUNK]))
                full_seconds += time.perf_counter() - started
                if refused := [outcome for outcome in outcomes if not isinstance(outcome, Signed)]:
                    print(f"unexpected refusal: {refused[0]}", file=sys.stderr)
                    return 1
            baseline, full = args.requests / baseline_seconds, args.requests / full_seconds
            ratios.append(full / baseline)
            best["baseline"], best["signer"] = max(best["baseline"], baseline), max(best["signer"], full)
            print(f"  round {round_number + 1}: raw eth-account {baseline:7.0f}/s, signer full path {full:7.0f}/s"
                  f" (ratio {full / baseline:.2f})")

        grouped = args.requests * args.rounds / max(1, journal.commits - commits)
        profile = _profile(signer, requests(200, sender, nonce, private_pem), pool)
        pool.shutdown()
        journal.close()
    ratio = sorted(ratios)[len(ratios) // 2]
    print(f"raw eth-account sign_transaction: {best['baseline']:8.0f} signatures/s")
    print(f"signer full path (auth, policy, journal + fsync, sign): {best['signer']:8.0f} requests/s")
    print(f"ratio signer/raw (median of rounds, each interleaved): {ratio:.2f} (goal >= 0.5)")
    print(f"journal commits: {grouped:.1f} requests per fsync on average")
    print(f"where the signer's time goes (200 requests, {args.threads} at once; shares of the requests' summed "
          "time): " + ", ".join(f"{name} {share:.0%}" for name, share in profile))
    return 0


def _profile(signer: Signer, batch: list[tuple[str, str, str]], pool: ThreadPoolExecutor) -> list[tuple[str, float]]:
    """Shares of the requests' summed time, by step, timed by wrapping the steps in place.

    The requests run at once, as in the rounds: a thread's time includes its waits for the
    journal's hold (another request being decided, or a commit) and for the group fsync.
    """
    spent: dict[str, float] = {}
    guard = threading.Lock()

    def count(name: str, seconds: float) -> None:
        with guard:
            spent[name] = spent.get(name, 0.0) + seconds

    def timed(name: str, function):  # noqa: ANN001, ANN202
        def wrapper(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
            started = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                count(name, time.perf_counter() - started)
        return wrapper

    journal = signer.journal
    held = journal.held

    @contextmanager
    def timed_held() -> Iterator[None]:
        started = time.perf_counter()
        with held():
            count("waiting for the journal's hold", time.perf_counter() - started)
            yield

    originals = {"write": journal.write, "sync": journal.sync, "held": journal.held, "_verify": signer._verify}
    journal.write = timed("journal write", journal.write)  # type: ignore[method-assign]
    journal.sync = timed("group commit (fsync) and waiting for it", journal.sync)  # type: ignore[method-assign]
    journal.held = timed_held  # type: ignore[method-assign]
    signer._verify = timed("Ed25519 authorization", signer._verify)  # type: ignore[method-assign]
    from signer import transactions

    original_sign = transactions.sign
    transactions.sign = timed("signing (secp256k1, EIP-1559 encoding)", original_sign)
    handle = timed("total", signer.handle)
    list(pool.map(lambda request: handle(*request), batch))
    for name, original in originals.items():
        setattr(signer if name == "_verify" else journal, name, original)
    transactions.sign = original_sign
    total = spent.pop("total")
    shares = [(name, seconds / total) for name, seconds in spent.items()]
    shares.append(("parse, policy, journal reads", 1 - sum(share for _, share in shares)))
    return sorted(shares, key=lambda item: -item[1])


if __name__ == "__main__":
    sys.exit(main())
