"""Every key the signer derives from its seed, inside the signer (which imports no other VirtuOZ domain).

Paths (DESIGN.md, "Keys and the signer"), one pair of hardened BIP44 accounts per chain:

- deposit addresses ``m/44'/60'/{account}'/0/{index}``: only this account's *public* key leaves
  the signer, as an xpub the allocator derives from;
- the hot wallet ``m/44'/60'/{hot_account}'/0/0``, on a hardened account of its own whose xpub is
  never exported. Non-hardened derivation is linear (``k_child = k_parent + IL``, ``IL`` from public
  data), so a hot key under an exported xpub would give away the account key and every deposit key;
- the hot wallet before it moved, ``m/44'/60'/{account}'/1/0`` (exactly that weakness): kept only
  so that what it signed can still be bumped and its balance moved to the new hot wallet.

The signer key, the Ed25519 key that signs every reply and the xpub file, is derived from the seed
too (HKDF-SHA256 under a label of its own): it is sealed in the keystore with the seed, restored by
the mnemonic with everything else, and its public half is exported by `virtuoz signer init`.
"""

from __future__ import annotations

from dataclasses import dataclass

from bip_utils import Bip32Secp256k1
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from core.settings import MAX_ACCOUNT, ChainSettings, default_hot_account

# SLIP-44 coin type 60 (Ether) for every EVM chain; chains differ by account.
COIN_TYPE = 60
DEPOSIT_CHANGE = 0
HOT_WALLET_CHANGE, HOT_WALLET_INDEX = 0, 0
RETIRED_HOT_WALLET_CHANGE = 1
SIGNER_KEY_LABEL = b"virtuoz/signer-key/v1"


@dataclass(frozen=True)
class ChainKeys:
    """The accounts of one chain: deposits (exported as an xpub) and the hot wallet (never exported)."""

    name: str
    account: int
    hot_account: int

    @classmethod
    def of(cls, chain: ChainSettings) -> ChainKeys:
        return cls(chain.name, chain.account, chain.hot_account)

    @classmethod
    def default(cls, name: str, account: int) -> ChainKeys:
        return cls(name, account, default_hot_account(account))


def account_path(account: int) -> str:
    if not 0 <= account <= MAX_ACCOUNT:
        raise ValueError(f"a BIP44 account is 0..{MAX_ACCOUNT}, not {account}")
    return f"m/44'/{COIN_TYPE}'/{account}'"


def account_xpub(seed: bytes, account: int) -> str:
    """The extended public key (``xpub…``) of ``m/44'/60'/{account}'``."""
    return Bip32Secp256k1.FromSeed(seed).DerivePath(account_path(account)).PublicKey().ToExtended()


def hot_wallet_path(hot_account: int) -> str:
    return f"{account_path(hot_account)}/{HOT_WALLET_CHANGE}/{HOT_WALLET_INDEX}"


def retired_hot_wallet_path(account: int) -> str:
    return f"{account_path(account)}/{RETIRED_HOT_WALLET_CHANGE}/{HOT_WALLET_INDEX}"


def signer_key(seed: bytes) -> Ed25519PrivateKey:
    raw = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=SIGNER_KEY_LABEL).derive(seed)
    return Ed25519PrivateKey.from_private_bytes(raw)
