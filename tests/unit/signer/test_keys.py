"""The signer's keys as `virtuoz signer init` lays them out: the hot wallet on a hardened account of
its own, and a public export (deposit xpubs and hot addresses) signed by the signer key.

The attack these tests close: BIP32 non-hardened derivation is linear, ``k_child = k_parent + IL``
with ``IL`` computed from public data (the parent's public key and chain code). Whoever holds an
account xpub and the private key of any non-hardened descendant recovers the account's private
key, and with it every deposit key.
"""

from __future__ import annotations

import hashlib
import hmac
import json

import coincurve
import pytest
from bip_utils import Bip32Secp256k1, EthAddr
from eth_account import Account
from pydantic import ValidationError

from core.settings import ChainSettings, Settings
from core.sign_requests import load_signer_public_key, xpub_file_message
from core.signing import b64url_decode
from custody.hd import load_xpubs
from signer.derivation import ChainKeys, hot_wallet_path
from signer.keystore import MIN_SCRYPT_N, InvalidKeystoreRequest, init_keystore, reexport, unlock_keystore

PASSPHRASE = "correct horse battery staple 42"
CHAINS = [
    ChainSettings(name="ethereum", chain_id=1, rpc_url="http://127.0.0.1:1", native="ETH", account=0),
    ChainSettings(name="polygon", chain_id=137, rpc_url="http://127.0.0.1:1", native="POL", account=1),
]
SECP256K1_ORDER = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
CHILDREN_TRIED = 50


def _tweak(parent: Bip32Secp256k1, index: int) -> int:
    """``IL`` of the non-hardened child ``index``: public data only (BIP32, CKDpub)."""
    digest = hmac.new(parent.ChainCode().ToBytes(), parent.PublicKey().RawCompressed().ToBytes()
                      + index.to_bytes(4, "big"), hashlib.sha512).digest()
    return int.from_bytes(digest[:32], "big")


def recovered_account_key(xpub: str, child_private: bytes, change: int, index: int) -> bytes | None:
    """The account private key, if ``child_private`` is the key of ``{change}/{index}`` under ``xpub``."""
    account = Bip32Secp256k1.FromExtendedKey(xpub)
    candidate = (int.from_bytes(child_private, "big") - _tweak(account, change)
                 - _tweak(account.ChildKey(change), index)) % SECP256K1_ORDER
    if candidate == 0:
        return None
    key = candidate.to_bytes(32, "big")
    if coincurve.PrivateKey(key).public_key.format() != account.PublicKey().RawCompressed().ToBytes():
        return None
    return key


def initialized(tmp_path):
    keystore_dir, xpub_file, public_key_file = tmp_path / "signer", tmp_path / "xpubs.json", tmp_path / "signer-key.pub"
    init_keystore(keystore_dir, xpub_file, PASSPHRASE, [ChainKeys.of(chain) for chain in CHAINS],
                  public_key_file=public_key_file, scrypt_n=MIN_SCRYPT_N)
    return unlock_keystore(keystore_dir, PASSPHRASE), json.loads(xpub_file.read_text()), public_key_file


def test_hot_key_not_derivable_from_deposit_xpub(tmp_path) -> None:
    seed, exported, _ = initialized(tmp_path)
    root = Bip32Secp256k1.FromSeed(seed)
    for chain in CHAINS:
        entry = exported["chains"][chain.name]
        hot_private = root.DerivePath(hot_wallet_path(chain.hot_account)).PrivateKey().Raw().ToBytes()
        hot_address = Account.from_key(hot_private).address
        assert entry["hot_wallet"] == hot_address
        assert entry["hot_account"] == chain.hot_account != chain.account
        assert "hot" not in json.dumps({key: value for key, value in entry.items()
                                        if key not in ("hot_account", "hot_wallet")})  # no hot xpub leaves
        # Every xpub exported (each chain's deposit account) against the hot key: no child of it is the
        # hot wallet, and the linear attack recovers no account key.
        for other in exported["chains"].values():
            account = Bip32Secp256k1.FromExtendedKey(other["xpub"])
            for change in (0, 1):
                for index in range(CHILDREN_TRIED):
                    child = account.ChildKey(change).ChildKey(index)
                    assert EthAddr.EncodeKey(child.PublicKey().KeyObject()) != hot_address
                    assert recovered_account_key(other["xpub"], hot_private, change, index) is None

    # The same attack on the retired layout (the hot wallet at {account}'/1/0) does recover the account key:
    # the check above is a real one.
    retired = root.DerivePath(f"m/44'/60'/{CHAINS[0].account}'/1/0").PrivateKey().Raw().ToBytes()
    account_private = root.DerivePath(f"m/44'/60'/{CHAINS[0].account}'").PrivateKey().Raw().ToBytes()
    assert recovered_account_key(exported["chains"]["ethereum"]["xpub"], retired, 1, 0) == account_private


def test_the_xpub_file_is_signed_by_the_exported_signer_key(tmp_path) -> None:
    _, exported, public_key_file = initialized(tmp_path)
    public_key = load_signer_public_key(public_key_file)
    signature = b64url_decode(exported.pop("signature"))
    public_key.verify(signature, xpub_file_message(exported))  # raises when it does not verify
    assert set(exported["chains"]) == {"ethereum", "polygon"}


def test_the_hot_account_defaults_to_the_top_of_the_range_and_must_differ_from_the_account() -> None:
    chain = ChainSettings(name="ethereum", chain_id=1, rpc_url="http://127.0.0.1:1", native="ETH", account=3)
    assert chain.hot_account == 2**31 - 1 - 3
    with pytest.raises(ValidationError, match="hot_account"):
        ChainSettings(name="ethereum", chain_id=1, rpc_url="http://127.0.0.1:1", native="ETH", account=3,
                      hot_account=3)


def test_a_hot_account_that_is_another_chains_deposit_account_is_refused() -> None:
    with pytest.raises(ValidationError, match="deposit account of polygon"):
        Settings(chains=[{**CHAINS[0].model_dump(), "hot_account": 1}, CHAINS[1].model_dump()])


def test_export_signs_the_file_of_a_keystore_made_before_and_keeps_its_deposit_xpubs(tmp_path) -> None:
    seed, exported, public_key_file = initialized(tmp_path)
    xpub_file = tmp_path / "xpubs.json"
    # The file as `signer init` wrote it before the hot wallet moved: deposit xpubs only, unsigned.
    xpub_file.write_text(json.dumps({"chains": {name: {"account": entry["account"], "xpub": entry["xpub"]}
                                                for name, entry in exported["chains"].items()}}))
    public_key_file.unlink()
    chains = [ChainKeys.of(chain) for chain in CHAINS]

    reexport(tmp_path / "signer", xpub_file, public_key_file, PASSPHRASE, chains)

    loaded = load_xpubs(xpub_file, load_signer_public_key(public_key_file))
    assert {name: entry.xpub for name, entry in loaded.items()} == {
        name: entry["xpub"] for name, entry in exported["chains"].items()}
    assert {name: entry.hot_wallet for name, entry in loaded.items()} == {
        name: entry["hot_wallet"] for name, entry in exported["chains"].items()}
    # Another account for a chain already exported would move its deposits: refused.
    with pytest.raises(InvalidKeystoreRequest, match="ethereum"):
        reexport(tmp_path / "signer", xpub_file, public_key_file, PASSPHRASE,
                 [ChainKeys.default("ethereum", 7), chains[1]])
