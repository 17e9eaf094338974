"""The fixed HD seed of the custody tests: a mnemonic and its account xpubs.

Anvil's and Hardhat's well-known development mnemonic, so derived addresses are repeatable. The
signer's part in the worker-level tests and the e2e scanner tests derive from the same seed.
"""

from __future__ import annotations

from collections.abc import Sequence

from bip_utils import Bip32Secp256k1, Bip39SeedGenerator

from core.settings import ChainSettings, Settings
from signer.derivation import ChainKeys, signer_key
from signer.exports import write_exports

MNEMONIC = "test test test test test test test test test test test junk"
SEED = Bip39SeedGenerator(MNEMONIC).Generate("")
# The signer key of the fixed seed, as `virtuoz signer init` derives it: tests that play the signer
# sign their replies with it, and read the public half from where the settings say.
SIGNER_KEY = signer_key(SEED)


def account_xpub(account: int = 0) -> str:
    root = Bip32Secp256k1.FromSeed(SEED)
    return root.DerivePath(f"m/44'/60'/{account}'").PublicKey().ToExtended()


def write_xpub_file(settings: Settings, chains: Sequence[ChainSettings]) -> None:
    """What `virtuoz signer init` exports for ``chains`` from the fixed seed, where ``settings`` read it:
    the signed xpub file (deposit xpubs and hot wallets) and the signer's public key."""
    assert settings.xpub_file is not None and settings.signer_public_key_file is not None
    write_exports(settings.xpub_file, settings.signer_public_key_file, SEED, [ChainKeys.of(chain) for chain in chains])


XPUB = account_xpub(0)
