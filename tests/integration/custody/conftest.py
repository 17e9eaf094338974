"""The fixed HD seed of the custody tests: a mnemonic and its account xpubs.

Anvil's and Hardhat's well-known development mnemonic, so derived addresses are repeatable. The
signer's part in the worker-level tests and the e2e scanner tests derive from the same seed.
"""

from __future__ import annotations

from bip_utils import Bip32Secp256k1, Bip39SeedGenerator

MNEMONIC = "test test test test test test test test test test test junk"


def account_xpub(account: int = 0) -> str:
    root = Bip32Secp256k1.FromSeed(Bip39SeedGenerator(MNEMONIC).Generate(""))
    return root.DerivePath(f"m/44'/60'/{account}'").PublicKey().ToExtended()


XPUB = account_xpub(0)
