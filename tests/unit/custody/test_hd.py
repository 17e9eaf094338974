"""Deposit address derivation from account xpubs, pinned to public BIP32/BIP44 vectors."""

from __future__ import annotations

import json

import pytest
from bip_utils import Bip32Secp256k1, Bip39SeedGenerator, Bip44, Bip44Changes, Bip44Coins, EthAddr

from core.sign_requests import load_signer_public_key
from custody.hd import XpubError, checksum_address, deposit_address, load_xpubs
from signer.derivation import ChainKeys
from signer.exports import write_exports

# The BIP39 test mnemonic every wallet documents; empty BIP39 passphrase.
MNEMONIC = "abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon about"
# m/44'/60'/0'/0/0 and /0/1 of MNEMONIC, as MetaMask, Ledger and ethers show them.
ADDRESS_0 = "0x9858EfFD232B4033E47d90003D41EC34EcaEda94"
ADDRESS_1 = "0x6Fac4D18c912343BF86fa7049364Dd4E424Ab9C0"


@pytest.fixture(scope="module")
def root() -> Bip32Secp256k1:
    return Bip32Secp256k1.FromSeed(Bip39SeedGenerator(MNEMONIC).Generate(""))


@pytest.fixture(scope="module")
def account_xpub(root) -> str:
    return root.DerivePath("m/44'/60'/0'").PublicKey().ToExtended()


def private_derivation(root: Bip32Secp256k1, path: str) -> str:
    return EthAddr.EncodeKey(root.DerivePath(path).PublicKey().KeyObject())


def test_index_0_is_the_well_known_address_of_the_test_mnemonic(account_xpub) -> None:
    assert deposit_address(account_xpub, 0) == ADDRESS_0


def test_index_1_matches_private_derivation_and_bip44(root, account_xpub) -> None:
    assert deposit_address(account_xpub, 1) == ADDRESS_1
    assert private_derivation(root, "m/44'/60'/0'/0/1") == ADDRESS_1
    bip44 = Bip44.FromSeed(Bip39SeedGenerator(MNEMONIC).Generate(""), Bip44Coins.ETHEREUM)
    assert bip44.Purpose().Coin().Account(0).Change(Bip44Changes.CHAIN_EXT).AddressIndex(1).PublicKey().ToAddress() == ADDRESS_1


@pytest.mark.parametrize("index", [2, 19, 1000, 2**31 - 1])
def test_public_derivation_equals_private_derivation(root, account_xpub, index) -> None:
    assert deposit_address(account_xpub, index) == private_derivation(root, f"m/44'/60'/0'/0/{index}")


def test_another_account_gives_other_addresses(root) -> None:
    account_1 = root.DerivePath("m/44'/60'/1'").PublicKey().ToExtended()
    assert deposit_address(account_1, 0) == private_derivation(root, "m/44'/60'/1'/0/0")
    assert deposit_address(account_1, 0) != ADDRESS_0


def test_addresses_are_eip55_checksummed(account_xpub) -> None:
    for index in range(5):
        address = deposit_address(account_xpub, index)
        assert checksum_address(address.lower()) == address


# The test vectors of EIP-55 itself (all caps, all lower, mixed).
EIP55_VECTORS = [
    "0x52908400098527886E0F7030069857D2E4169EE7",
    "0x8617E340B3D01FA5F11F306F4090FD50E238070D",
    "0xde709f2102306220921060314715629080e2fb77",
    "0x27b1fdb04752bbc536007a920d24acb045561c26",
    "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed",
    "0xfB6916095ca1df60bB79Ce92cE3Ea74c37c5d359",
    "0xdbF03B407c01E7cD3CBea99509d93f8DDDC8C6FB",
    "0xD1220A0cf47c7B9Be7A2E6BA89F429762e7b9aDb",
]


@pytest.mark.parametrize("address", EIP55_VECTORS)
def test_checksum_address_follows_eip55(address) -> None:
    assert checksum_address(address.lower()) == checksum_address(address.upper().replace("0X", "0x"))
    if address[2:] not in (address[2:].lower(), address[2:].upper()):  # mixed case: already checksummed
        assert checksum_address(address.lower()) == address


def test_a_wrong_mixed_case_checksum_is_refused() -> None:
    broken = "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAeD"  # last letter's case flipped
    with pytest.raises(ValueError, match="checksum"):
        checksum_address(broken)


def test_an_extended_private_key_is_refused(root) -> None:
    xprv = root.DerivePath("m/44'/60'/0'").PrivateKey().ToExtended()
    with pytest.raises(XpubError, match="PRIVATE") as refused:
        deposit_address(xprv, 0)
    assert xprv not in str(refused.value)


def test_an_xpub_that_is_not_account_level_is_refused(root) -> None:
    with pytest.raises(XpubError, match="account-level"):
        deposit_address(root.DerivePath("m/44'/60'/0'/0").PublicKey().ToExtended(), 0)
    with pytest.raises(XpubError):
        deposit_address("xpub-not-a-key", 0)


@pytest.mark.parametrize("index", [-1, 2**31])
def test_hardened_or_negative_indexes_are_refused(account_xpub, index) -> None:
    with pytest.raises(ValueError):
        deposit_address(account_xpub, index)


def test_load_xpubs_reads_the_signer_export(tmp_path, account_xpub) -> None:
    path, public_key_file = tmp_path / "xpubs.json", tmp_path / "signer-key.pub"
    seed = Bip39SeedGenerator(MNEMONIC).Generate("")
    write_exports(path, public_key_file, seed, [ChainKeys.default("ethereum", 0)])
    public_key = load_signer_public_key(public_key_file)
    xpubs = load_xpubs(path, public_key)
    assert xpubs["ethereum"].account == 0 and xpubs["ethereum"].xpub == account_xpub
    assert xpubs["ethereum"].hot_account == 2**31 - 1

    with pytest.raises(XpubError, match="signer init"):
        load_xpubs(tmp_path / "missing.json", public_key)
    path.write_text("not json")
    with pytest.raises(XpubError, match="not an xpub file"):
        load_xpubs(path, public_key)
    path.write_text(json.dumps({"chains": {}}))
    with pytest.raises(XpubError, match="not signed by the signer key"):
        load_xpubs(path, public_key)
