"""The signer's keystore: sealed seed at rest, public exports out, refusal to overwrite."""

from __future__ import annotations

import base64
import json
import os
import re
import stat
from pathlib import Path

import pytest
from bip_utils import Bip32Secp256k1, Bip39Languages, EthAddr
from bip_utils.bip.bip39.bip39_mnemonic_utils import Bip39WordsListGetter

from core.sign_requests import load_signer_public_key
from custody.hd import deposit_address, load_xpubs
from signer.derivation import ChainKeys
from signer.keystore import (
    MIN_SCRYPT_N,
    InvalidKeystoreRequest,
    KeystoreCorrupt,
    KeystoreExists,
    KeystoreMissing,
    WrongPassphrase,
    init_keystore,
    keystore_path,
    unlock_keystore,
)

PASSPHRASE = "correct horse battery staple 42"
CHAINS = [ChainKeys.default("ethereum", 0), ChainKeys.default("polygon", 1)]


@pytest.fixture
def paths(tmp_path: Path) -> tuple[Path, Path]:
    return tmp_path / "signer", tmp_path / "public" / "xpubs.json"


@pytest.fixture
def initialized(paths) -> tuple[Path, Path]:
    keystore_dir, xpub_file = paths
    init_keystore(keystore_dir, xpub_file, PASSPHRASE, CHAINS, scrypt_n=MIN_SCRYPT_N)
    return keystore_dir, xpub_file


def test_unlock_with_the_right_passphrase_gives_the_64_byte_seed(initialized) -> None:
    keystore_dir, _ = initialized
    seed = unlock_keystore(keystore_dir, PASSPHRASE)
    assert isinstance(seed, bytes) and len(seed) == 64
    assert unlock_keystore(keystore_dir, PASSPHRASE) == seed


def test_wrong_passphrase_is_a_typed_error_without_secrets(initialized) -> None:
    keystore_dir, _ = initialized
    seed = unlock_keystore(keystore_dir, PASSPHRASE)
    with pytest.raises(WrongPassphrase) as refused:
        unlock_keystore(keystore_dir, PASSPHRASE + "!")
    assert refused.value.code == "wrong_passphrase"
    assert refused.value.__cause__ is None and refused.value.__suppress_context__
    assert seed.hex() not in str(refused.value) and PASSPHRASE not in str(refused.value)


def test_keystore_file_is_0600_in_a_0700_directory(initialized) -> None:
    keystore_dir, xpub_file = initialized
    assert stat.S_IMODE(os.stat(keystore_path(keystore_dir)).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(keystore_dir).st_mode) == 0o700
    assert sorted(path.name for path in keystore_dir.iterdir()) == ["keystore.json"]  # no temporary left behind
    assert sorted(path.name for path in xpub_file.parent.iterdir()) == ["signer-key.pub", "xpubs.json"]
    for public in xpub_file.parent.iterdir():
        assert stat.S_IMODE(os.stat(public).st_mode) == 0o644  # public by design


def test_keystore_holds_no_plaintext_seed_or_mnemonic(initialized) -> None:
    keystore_dir, xpub_file = initialized
    seed = unlock_keystore(keystore_dir, PASSPHRASE)
    bip39_words = set(Bip39WordsListGetter().GetByLanguage(Bip39Languages.ENGLISH).m_idx_to_words)
    for path in (keystore_path(keystore_dir), xpub_file, xpub_file.with_name("signer-key.pub")):
        text = path.read_text()
        assert seed.hex() not in text.lower()
        assert base64.b64encode(seed).decode() not in text
        assert "xprv" not in text
        # A mnemonic would show as BIP39 words separated by spaces; three in a row is already too many.
        for run in re.findall(r"[a-z]+(?:\s+[a-z]+){2,}", text):
            assert not all(word in bip39_words for word in run.split()), run


def test_keystore_records_its_version_and_kdf_parameters(initialized) -> None:
    keystore_dir, _ = initialized
    document = json.loads(keystore_path(keystore_dir).read_text())
    assert document["version"] == 1
    assert document["kdf"]["name"] == "scrypt"
    assert (document["kdf"]["n"], document["kdf"]["r"], document["kdf"]["p"]) == (MIN_SCRYPT_N, 8, 1)
    assert len(base64.b64decode(document["kdf"]["salt"])) == 16
    assert document["cipher"]["name"] == "aes-256-gcm"


def test_two_keystores_have_different_seeds_and_salts(tmp_path) -> None:
    for name in ("a", "b"):
        init_keystore(tmp_path / name, tmp_path / f"{name}.json", PASSPHRASE, CHAINS,
                      public_key_file=tmp_path / f"{name}.pub", scrypt_n=MIN_SCRYPT_N)
    assert unlock_keystore(tmp_path / "a", PASSPHRASE) != unlock_keystore(tmp_path / "b", PASSPHRASE)
    salts = {json.loads(keystore_path(tmp_path / name).read_text())["kdf"]["salt"] for name in ("a", "b")}
    assert len(salts) == 2


def test_xpub_file_matches_derivation_from_the_unlocked_seed(initialized) -> None:
    keystore_dir, xpub_file = initialized
    root = Bip32Secp256k1.FromSeed(unlock_keystore(keystore_dir, PASSPHRASE))
    document = json.loads(xpub_file.read_text())
    assert set(document["chains"]) == {"ethereum", "polygon"}
    public_key = load_signer_public_key(xpub_file.with_name("signer-key.pub"))
    for chain in CHAINS:
        entry = document["chains"][chain.name]
        assert (entry["account"], entry["hot_account"]) == (chain.account, chain.hot_account)
        assert entry["xpub"].startswith("xpub")
        assert entry["xpub"] == root.DerivePath(f"m/44'/60'/{chain.account}'").PublicKey().ToExtended()
        # What the allocator derives from the file is the signer's own m/44'/60'/{account}'/0/{index}.
        private = root.DerivePath(f"m/44'/60'/{chain.account}'/0/7")
        loaded = load_xpubs(xpub_file, public_key)[chain.name]
        assert deposit_address(loaded.xpub, 7) == EthAddr.EncodeKey(private.PublicKey().KeyObject())
        hot = root.DerivePath(f"m/44'/60'/{chain.hot_account}'/0/0")
        assert loaded.hot_wallet == EthAddr.EncodeKey(hot.PublicKey().KeyObject())


def test_rerunning_init_refuses_to_overwrite(initialized) -> None:
    keystore_dir, xpub_file = initialized
    before = (keystore_path(keystore_dir).read_bytes(), xpub_file.read_bytes())
    with pytest.raises(KeystoreExists, match="refusing to overwrite"):
        init_keystore(keystore_dir, xpub_file, PASSPHRASE, CHAINS, scrypt_n=MIN_SCRYPT_N)
    with pytest.raises(KeystoreExists):  # another keystore dir, same xpub file: still refused
        init_keystore(keystore_dir.parent / "other", xpub_file, PASSPHRASE, CHAINS, scrypt_n=MIN_SCRYPT_N)
    assert (keystore_path(keystore_dir).read_bytes(), xpub_file.read_bytes()) == before
    assert not (keystore_dir.parent / "other" / "keystore.json").exists()


def test_missing_or_altered_keystore_is_a_typed_error(initialized, tmp_path) -> None:
    keystore_dir, _ = initialized
    with pytest.raises(KeystoreMissing):
        unlock_keystore(tmp_path / "nowhere", PASSPHRASE)

    path = keystore_path(keystore_dir)
    document = json.loads(path.read_text())
    # A header edit fails like a wrong passphrase: the header is authenticated with the ciphertext.
    path.write_text(json.dumps({**document, "master_fingerprint": "00000000"}))
    with pytest.raises(WrongPassphrase):
        unlock_keystore(keystore_dir, PASSPHRASE)
    path.write_text(json.dumps({**document, "kdf": {**document["kdf"], "n": 2**10}}))
    with pytest.raises(KeystoreCorrupt, match="scrypt"):
        unlock_keystore(keystore_dir, PASSPHRASE)
    path.write_text(json.dumps({**document, "version": 99}))
    with pytest.raises(KeystoreCorrupt, match="version"):
        unlock_keystore(keystore_dir, PASSPHRASE)
    path.write_text("not json")
    with pytest.raises(KeystoreCorrupt):
        unlock_keystore(keystore_dir, PASSPHRASE)


@pytest.mark.parametrize(("passphrase", "chains", "scrypt_n", "match"), [
    ("", CHAINS, MIN_SCRYPT_N, "empty passphrase"),
    (PASSPHRASE, [], MIN_SCRYPT_N, "no chains"),
    (PASSPHRASE, [ChainKeys.default("ethereum", 0), ChainKeys.default("polygon", 0)], MIN_SCRYPT_N,
     "share BIP44 account 0"),
    (PASSPHRASE, [ChainKeys.default("ethereum", 0), ChainKeys.default("ethereum", 1)], MIN_SCRYPT_N, "twice"),
    (PASSPHRASE, [ChainKeys("ethereum", 0, 1), ChainKeys.default("polygon", 1)], MIN_SCRYPT_N,
     "share BIP44 account 1"),
    (PASSPHRASE, [ChainKeys("ethereum", 0, 0)], MIN_SCRYPT_N, "share BIP44 account 0"),
    (PASSPHRASE, CHAINS, 2**14, "scrypt n"),
])
def test_unsafe_requests_are_refused_before_anything_is_written(paths, passphrase, chains, scrypt_n, match) -> None:
    keystore_dir, xpub_file = paths
    with pytest.raises(InvalidKeystoreRequest, match=match):
        init_keystore(keystore_dir, xpub_file, passphrase, chains, scrypt_n=scrypt_n)
    assert not keystore_dir.exists() and not xpub_file.exists()
