"""BIP32/BIP44 derivation from the seed, inside the signer (which imports no other VirtuOZ domain).

Paths (DESIGN.md, "Keys and the signer"): one hardened BIP44 account per chain,
``m/44'/60'/{account}'``; deposit addresses ``…/0/{index}`` and the hot wallet ``…/1/0`` are
derived from it. Only the account-level *public* key leaves the signer, as an xpub.
"""

from __future__ import annotations

from bip_utils import Bip32Secp256k1

# SLIP-44 coin type 60 (Ether) for every EVM chain; chains differ by account.
COIN_TYPE = 60
MAX_ACCOUNT = 2**31 - 1


def account_path(account: int) -> str:
    if not 0 <= account <= MAX_ACCOUNT:
        raise ValueError(f"a BIP44 account is 0..{MAX_ACCOUNT}, not {account}")
    return f"m/44'/{COIN_TYPE}'/{account}'"


def account_xpub(seed: bytes, account: int) -> str:
    """The extended public key (``xpub…``) of ``m/44'/60'/{account}'``."""
    return Bip32Secp256k1.FromSeed(seed).DerivePath(account_path(account)).PublicKey().ToExtended()
