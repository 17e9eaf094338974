"""Deposit addresses from account xpubs: public BIP32 derivation only, no private key anywhere.

The signer exports one xpub per chain, ``m/44'/60'/{account}'``; the deposit address with index
``i`` is its external child ``0/i``, i.e. ``m/44'/60'/{account}'/0/i`` (DESIGN.md, "Keys and the
signer"). Addresses are EIP-55 checksummed: that is how they are stored and shown.

The xpub file also names each chain's hot wallet (its own hardened account, whose xpub never
leaves the signer) and is signed by the signer key: ``load_xpubs`` believes nothing in it before
that signature verifies with the public key from this process's own configuration.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from bip_utils import Bip32Secp256k1, EthAddr
from bip_utils.bip.bip32.base import Bip32Base
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from eth_utils import is_checksum_address, is_hex_address, to_checksum_address

from core.settings import Settings
from core.sign_requests import load_signer_public_key, xpub_file_message
from core.signing import b64url_decode

EXTERNAL_CHAIN = 0  # BIP44 change 0: addresses handed to customers
ACCOUNT_DEPTH = 3  # m / purpose' / coin_type' / account'
MAX_INDEX = 2**31 - 1  # above, BIP32 indexes are hardened: not derivable from an xpub


class XpubError(ValueError):
    """An xpub (or the xpub file) is unusable; the message says why and never shows a private key."""


@dataclass(frozen=True)
class AccountXpub:
    chain: str
    account: int
    xpub: str
    hot_account: int
    hot_wallet: str  # EIP-55


def deposit_address(xpub: str, index: int) -> str:
    """The EIP-55 address of ``0/{index}`` under the account ``xpub``."""
    if not 0 <= index <= MAX_INDEX:
        raise ValueError(f"a deposit address index is 0..{MAX_INDEX}, not {index}")
    key = _external_chain(xpub).ChildKey(index)
    return EthAddr.EncodeKey(key.PublicKey().KeyObject())


def checksum_address(address: str) -> str:
    """``address`` in EIP-55 form; a malformed address (or a wrong mixed-case checksum) is refused."""
    if not (address.startswith("0x") and is_hex_address(address)):
        raise ValueError(f"{address!r} is not an EVM address")
    digits = address[2:]
    # Mixed case claims an EIP-55 checksum: a typo in it must fail, not be silently "fixed".
    if digits not in (digits.lower(), digits.upper()) and not is_checksum_address(address):
        raise ValueError(f"{address!r} has a wrong EIP-55 checksum")
    return to_checksum_address(address)


def load_xpubs(xpub_file: Path, signer_public_key: Ed25519PublicKey) -> dict[str, AccountXpub]:
    """The deposit xpubs and hot wallets exported by `virtuoz signer init`, by chain name, once the
    signer key's signature over the whole file verifies (whatever it lists, nothing included)."""
    try:
        document = json.loads(xpub_file.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise XpubError(f"no xpub file at {xpub_file}: run `virtuoz signer init` and share its xpub file") from None
    except (OSError, ValueError):
        raise XpubError(f"{xpub_file} is not an xpub file written by `virtuoz signer init`") from None
    signature = document.get("signature") if isinstance(document, dict) else None
    if not isinstance(signature, str):
        raise XpubError(f"{xpub_file} is not signed by the signer key (an xpub file from before signed exports? "
                        "run `virtuoz signer export`)")
    try:
        signer_public_key.verify(b64url_decode(signature), xpub_file_message(document))
    except (ValueError, InvalidSignature):
        raise XpubError(f"{xpub_file} does not verify with the signer key of this configuration "
                        "(VIRTUOZ_SIGNER_PUBLIC_KEY_FILE): refusing every xpub and hot wallet in it") from None
    try:
        xpubs = {name: AccountXpub(name, _number(entry["account"]), str(entry["xpub"]), _number(entry["hot_account"]),
                                   checksum_address(entry["hot_wallet"]))
                 for name, entry in document["chains"].items()}
    except (ValueError, TypeError, KeyError, AttributeError):
        raise XpubError(f"{xpub_file} is signed but not an xpub file this version reads") from None
    for account_xpub in xpubs.values():
        _account_key(account_xpub.xpub)  # refuse a bad file as a whole, before any address is derived
        if account_xpub.hot_account == account_xpub.account:
            raise XpubError(f"{xpub_file}: the hot wallet of {account_xpub.chain} is under its deposit xpub")
    return xpubs


def signed_xpubs(settings: Settings) -> dict[str, AccountXpub]:
    """``load_xpubs`` with the files of ``settings`` (the xpub file, the signer's public key)."""
    assert settings.xpub_file is not None and settings.signer_public_key_file is not None  # filled in by Settings
    return load_xpubs(settings.xpub_file, load_signer_public_key(settings.signer_public_key_file))


def _number(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError("not an integer")
    return value


@lru_cache(maxsize=64)
def _external_chain(xpub: str) -> Bip32Base:
    return _account_key(xpub).ChildKey(EXTERNAL_CHAIN)


@lru_cache(maxsize=64)
def _account_key(xpub: str) -> Bip32Base:
    try:
        key = Bip32Secp256k1.FromExtendedKey(xpub)
    except Exception:  # bip-utils raises several unrelated types for a malformed key
        raise XpubError("not a valid BIP32 extended public key") from None
    # An xprv would derive too, but the allocator must never hold one: refuse it, by name only.
    if not key.IsPublicOnly():
        raise XpubError("an extended PRIVATE key was given where an xpub belongs; it must not leave the signer")
    if key.Depth().ToInt() != ACCOUNT_DEPTH or not key.Index().IsHardened():
        raise XpubError("the xpub is not an account-level key (m/44'/60'/account')")
    return key


# The hot wallet before it moved to an account of its own: ``1/0`` under the deposit xpub. Still
# watched (reconciliation) and emptied into the new one (`virtuoz hot-wallet migrate`).
RETIRED_HOT_WALLET_CHAIN, RETIRED_HOT_WALLET_INDEX = 1, 0


def retired_hot_wallet_address(xpub: str) -> str:
    """The EIP-55 address of ``1/0`` under the account ``xpub``: the chain's hot wallet of before."""
    key = _account_key(xpub).ChildKey(RETIRED_HOT_WALLET_CHAIN).ChildKey(RETIRED_HOT_WALLET_INDEX)
    return EthAddr.EncodeKey(key.PublicKey().KeyObject())
