"""`virtuoz reserves verify PROOF.json [--root HASH] [--user-id UUID]`: check a proof of reserves offline.

Reads no database and no setting: what a customer downloaded from ``GET /api/v1/wallet/reserves-proof``
is checked with the rules of ``custody.treasury.merkle`` alone (the README spells them out, for anyone
writing a verifier of their own). Exit 0 with "proof OK …"; exit 1 naming the failure.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from core.settings import Settings
from custody.treasury import merkle

MAX_PROOF_BYTES = 1 << 20  # a path of 64 entries is a few kB


def add_commands(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    reserves = subparsers.add_parser("reserves", help="proof of reserves")
    commands = reserves.add_subparsers(dest="reserves_command", required=True, metavar="COMMAND")
    verify = commands.add_parser("verify", help="check a proof (GET /api/v1/wallet/reserves-proof) offline; exit 1 "
                                                "naming the failure")
    verify.add_argument("proof", type=Path, metavar="PROOF.json")
    verify.add_argument("--root", help="the published root hash (GET /api/v1/reserves/latest) it must lead to")
    verify.add_argument("--user-id", help="your user id: checks that the leaf is yours (leaf.id = H(user_id:nonce))")
    verify.set_defaults(run=run_verify, process="reserves", offline=True)


def run_verify(settings: Settings | None, args: argparse.Namespace) -> int:
    try:
        with args.proof.open("rb") as file:
            text = file.read(MAX_PROOF_BYTES + 1)
        if len(text) > MAX_PROOF_BYTES:
            raise ValueError(f"larger than {MAX_PROOF_BYTES} bytes")
        document = json.loads(text)
    except (OSError, ValueError) as error:
        print(f"proof FAILED: malformed proof: {args.proof} is not a readable JSON proof ({error})")
        return 1
    try:
        checked = merkle.verify_proof(document, root=args.root, user_id=args.user_id)
    except merkle.ProofError as failure:
        print(f"proof FAILED: {failure}")
        return 1
    epoch, asset = document.get("epoch"), document.get("asset")
    print(f"proof OK: epoch {epoch}, {asset}: leaf {checked.leaf_id} with balance {checked.balance} (minor units) "
          f"is in root {checked.root.hash} summing {checked.root.sum}, through {checked.steps} levels"
          + (f"; the leaf is user {args.user_id}'s" if args.user_id else ""))
    return 0
