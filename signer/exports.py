"""What leaves the signer, ever: the xpub file and the signer key's public half.

The xpub file lists, per chain, the deposit account's xpub (the allocator derives deposit addresses
from it) and the hot wallet's address (the custody worker pays withdrawals from it, compliance
reconciles it); the signer key signs the whole file (``core.sign_requests.xpub_file_message``), so
whoever could swap the file cannot choose where deposits go or which wallet the platform trusts.
The public key goes to a file of its own, copied once into the configuration of those processes.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bip_utils import Bip32Secp256k1
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from eth_account import Account

from core.sign_requests import xpub_file_message
from core.signing import b64url_encode
from signer.derivation import ChainKeys, account_path, account_xpub, hot_wallet_path, signer_key

XPUB_FILE_KIND = "virtuoz-xpubs"
XPUB_FILE_VERSION = 2  # 1: unsigned, deposit xpubs only (the hot wallet was derived from them)


def public_key_text(key: Ed25519PrivateKey) -> str:
    raw = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return b64url_encode(raw)


def xpub_document(seed: bytes, chains: Sequence[ChainKeys]) -> dict[str, Any]:
    """The xpub file's content for ``chains``, signed by the seed's signer key."""
    root = Bip32Secp256k1.FromSeed(seed)
    document: dict[str, Any] = {
        "kind": XPUB_FILE_KIND,
        "version": XPUB_FILE_VERSION,
        "master_fingerprint": root.FingerPrint().ToBytes().hex(),
        "chains": {
            chain.name: {
                "account": chain.account, "path": account_path(chain.account),
                "xpub": account_xpub(seed, chain.account),
                "hot_account": chain.hot_account,
                "hot_wallet": Account.from_key(root.DerivePath(hot_wallet_path(chain.hot_account)).PrivateKey()
                                               .Raw().ToBytes()).address,
            }
            for chain in chains
        },
    }
    document["signature"] = b64url_encode(signer_key(seed).sign(xpub_file_message(document)))
    return document


def dump(document: dict[str, Any]) -> bytes:
    return (json.dumps(document, indent=2, sort_keys=True) + "\n").encode()


def write_exports(xpub_file: Path, public_key_file: Path, seed: bytes, chains: Sequence[ChainKeys]) -> None:
    """Write (or rewrite) both public files; each replaced atomically, public by design (0644)."""
    for path, content in ((public_key_file, (public_key_text(signer_key(seed)) + "\n").encode()),
                          (xpub_file, dump(xpub_document(seed, chains)))):
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
        try:
            with open(temporary, "wb") as output:
                os.fchmod(output.fileno(), 0o644)
                output.write(content)
                output.flush()
                os.fsync(output.fileno())
            os.replace(temporary, path)
        finally:
            temporary.unlink(missing_ok=True)
