"""The signer's own checks: authorization, policy, journal rules, repeats — with a real key and a real SQLite file."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
from bip_utils import Bip39SeedGenerator
from eth_account import Account

from core.sanctions import SanctionsList
from core.settings import ChainSettings, WithdrawalLimit
from core.sign_requests import UnsignedTx, erc20_transfer_data
from core.signing import generate_keypair, load_public_key
from custody.chains.transactions import check_signed
from custody.withdrawals.authorization import _parse, authorize
from signer.journal import Journal
from signer.policy import Policy
from signer.service import Refused, Signed, Signer

SEED = Bip39SeedGenerator("test test test test test test test test test test test junk").Generate("")
USDC = "0x5FbDB2315678afecb367f032d93F642f64180aa3"
DESTINATION = "0x70997970C51812dc3A010C7d01b50e0d17dc79C8"
SANCTIONED = "0x000000000000000000000000000000000000dEaD"
CHAIN = ChainSettings(name="ethereum", chain_id=31337, rpc_url="http://127.0.0.1:1", native="ETH",
                      tokens={"USDC": USDC}, account=0)
WITHDRAWAL = "00000000-0000-4000-8000-000000000001"
OTHER = "00000000-0000-4000-8000-000000000002"
LIMITS = {"ETH": WithdrawalLimit(decimals=18, single="2", daily="3"),
          "USDC": WithdrawalLimit(decimals=6, single="1000", daily="5000")}


@pytest.fixture
def keys() -> tuple[str, str]:
    return generate_keypair()


def make_signer(tmp_path: Path, public_key: str, limits=LIMITS, fee_caps=None) -> Signer:
    sanctions = tmp_path / "sanctions.txt"
    sanctions.write_text(f"# test list\n{SANCTIONED}\n")
    policy = Policy([CHAIN], limits, SanctionsList(sanctions), fee_caps=fee_caps)
    return Signer(SEED, [CHAIN], policy, Journal(tmp_path / "journal.sqlite3"), load_public_key(public_key))


@pytest.fixture
def signer(tmp_path: Path, keys: tuple[str, str]) -> Signer:
    return make_signer(tmp_path, keys[1])


def native(signer: Signer, *, nonce: int = 0, to: str = DESTINATION, value: int = 10**18, fee: int = 3 * 10**9,
           tip: int = 10**9) -> UnsignedTx:
    return UnsignedTx(chain_id=31337, sender=signer.hot_wallet(31337), nonce=nonce, to=to, value=value, data="0x",
                      gas=21_000, max_fee_per_gas=fee, max_priority_fee_per_gas=tip)


def ask(signer: Signer, private_pem: str, withdrawal: str, unsigned: UnsignedTx | str) -> Signed | Refused:
    text = unsigned if isinstance(unsigned, str) else unsigned.canonical()
    return signer.handle(withdrawal, text, authorize(_parse(private_pem), withdrawal, text))


def reason(outcome: Signed | Refused) -> str:
    assert isinstance(outcome, Refused), outcome
    return outcome.reason


def test_the_hot_wallet_is_m44_60_hot_account_0_0_and_not_under_the_deposit_xpub(signer) -> None:
    from bip_utils import Bip32Secp256k1

    from custody.hd import deposit_address

    root = Bip32Secp256k1.FromSeed(SEED)
    expected = Account.from_key(root.DerivePath(f"m/44'/60'/{CHAIN.hot_account}'/0/0").PrivateKey().Raw()
                                .ToBytes()).address
    assert signer.hot_wallet(31337) == expected
    assert deposit_address(root.DerivePath("m/44'/60'/0'").PublicKey().ToExtended(), 0) != expected


def test_signs_once_and_answers_a_repeat_with_the_same_bytes(signer, keys) -> None:
    unsigned = native(signer)
    first = ask(signer, keys[0], WITHDRAWAL, unsigned)
    assert isinstance(first, Signed) and not first.repeated
    assert check_signed(first.raw_tx, unsigned) == first.tx_hash
    again = ask(signer, keys[0], WITHDRAWAL, unsigned)
    assert isinstance(again, Signed) and again.repeated and again.raw_tx == first.raw_tx


def test_the_journal_survives_a_restart(tmp_path, keys) -> None:
    first = ask(make_signer(tmp_path, keys[1]), keys[0], WITHDRAWAL, native(make_signer(tmp_path, keys[1])))
    restarted = make_signer(tmp_path, keys[1])
    again = ask(restarted, keys[0], WITHDRAWAL, native(restarted))
    assert isinstance(again, Signed) and again.repeated and again.raw_tx == first.raw_tx  # type: ignore[union-attr]


def test_a_tampered_request_is_refused(signer, keys) -> None:
    unsigned = native(signer)
    text = unsigned.canonical()
    authorization = authorize(_parse(keys[0]), WITHDRAWAL, text)
    for tampered in (replace(unsigned, to="0x3C44CdDdB6a900fa2b585dd299e03d12FA4293BC"),
                     replace(unsigned, value=unsigned.value * 10)):
        outcome = signer.handle(WITHDRAWAL, tampered.canonical(), authorization)
        assert reason(outcome) == "invalid_authorization"
    assert reason(signer.handle(OTHER, text, authorization)) == "invalid_authorization"  # bound to the withdrawal
    foreign = generate_keypair()[0]
    assert reason(ask(signer, foreign, WITHDRAWAL, unsigned)) == "invalid_authorization"
    assert reason(signer.handle(WITHDRAWAL, text, "not-base64!")) == "invalid_authorization"
    # The genuine request still goes through: a forged refusal is not sticky.
    assert isinstance(signer.handle(WITHDRAWAL, text, authorization), Signed)


def test_malformed_requests_are_refused(signer, keys) -> None:
    text = native(signer).canonical()
    spaced = json.dumps(json.loads(text), indent=1)
    assert reason(signer.handle(WITHDRAWAL, spaced, authorize(_parse(keys[0]), WITHDRAWAL, spaced))) == \
        "malformed_request"
    assert reason(signer.handle("not-a-uuid", text, "x")) == "malformed_request"
    assert reason(signer.handle(WITHDRAWAL, 42, "x")) == "malformed_request"


def test_limits_single_and_rolling_daily(signer, keys) -> None:
    assert reason(ask(signer, keys[0], WITHDRAWAL, native(signer, value=2 * 10**18 + 1))) == "single_limit_exceeded"
    assert isinstance(ask(signer, keys[0], OTHER, native(signer, nonce=1, value=2 * 10**18)), Signed)
    third = "00000000-0000-4000-8000-000000000003"
    assert reason(ask(signer, keys[0], third, native(signer, nonce=2, value=10**18 + 1))) == "daily_limit_exceeded"
    assert isinstance(ask(signer, keys[0], third, native(signer, nonce=3, value=10**18)), Signed)


def test_a_refusal_of_an_authorized_request_is_sticky(tmp_path, keys) -> None:
    strict = make_signer(tmp_path, keys[1])
    unsigned = native(strict, value=2 * 10**18 + 1)
    assert reason(ask(strict, keys[0], WITHDRAWAL, unsigned)) == "single_limit_exceeded"
    generous = make_signer(tmp_path, keys[1], limits={"ETH": WithdrawalLimit(decimals=18, single="100", daily="100")})
    # The custody worker has voided the hold on hearing the refusal: a redelivered copy stays refused.
    assert reason(ask(generous, keys[0], WITHDRAWAL, unsigned)) == "single_limit_exceeded"


def test_sanctioned_destinations_native_and_token(signer, keys) -> None:
    assert reason(ask(signer, keys[0], WITHDRAWAL, native(signer, to=SANCTIONED))) == "sanctioned_address"
    token = replace(native(signer), to=USDC, value=0, data=erc20_transfer_data(SANCTIONED, 10**6), gas=100_000)
    assert reason(ask(signer, keys[0], OTHER, token)) == "sanctioned_address"


def test_token_transfers_are_read_from_the_call(signer, keys) -> None:
    token = replace(native(signer), to=USDC, value=0, data=erc20_transfer_data(DESTINATION, 1001 * 10**6), gas=100_000)
    assert reason(ask(signer, keys[0], WITHDRAWAL, token)) == "single_limit_exceeded"
    approve = replace(token, data="0x095ea7b3" + token.data[10:])
    assert reason(ask(signer, keys[0], OTHER, approve)) == "unknown_asset"
    contract_call = replace(native(signer), data="0xdeadbeef")
    assert reason(ask(signer, keys[0], "00000000-0000-4000-8000-000000000003", contract_call)) == "unknown_asset"


def test_wrong_sender_and_unknown_chain(signer, keys) -> None:
    assert reason(ask(signer, keys[0], WITHDRAWAL, replace(native(signer), sender=DESTINATION))) == "wrong_sender"
    assert reason(ask(signer, keys[0], OTHER, replace(native(signer), chain_id=1))) == "unknown_chain"


def test_one_nonce_one_withdrawal_one_withdrawal_one_nonce(signer, keys) -> None:
    assert isinstance(ask(signer, keys[0], WITHDRAWAL, native(signer, nonce=7)), Signed)
    assert reason(ask(signer, keys[0], OTHER, native(signer, nonce=7, value=5))) == "nonce_taken"
    assert reason(ask(signer, keys[0], WITHDRAWAL, native(signer, nonce=8))) == "withdrawal_signed_elsewhere"


def test_a_replacement_is_the_same_payment_with_higher_fees(signer, keys) -> None:
    first = ask(signer, keys[0], WITHDRAWAL, native(signer))
    bump = ask(signer, keys[0], WITHDRAWAL, native(signer, fee=4 * 10**9, tip=2 * 10**9))
    assert isinstance(first, Signed) and isinstance(bump, Signed) and bump.tx_hash != first.tx_hash
    assert reason(ask(signer, keys[0], WITHDRAWAL, native(signer, fee=4 * 10**9 + 1, tip=2 * 10**9))) == \
        "replacement_not_allowed"  # the tip did not rise
    assert reason(ask(signer, keys[0], WITHDRAWAL, native(signer, fee=9 * 10**9, tip=3 * 10**9,
                                                          to="0x3C44CdDdB6a900fa2b585dd299e03d12FA4293BC"))) == \
        "replacement_not_allowed"
    # Over a limit on a replacement still reads as "this withdrawal has a signature", never as a clean refusal.
    assert reason(ask(signer, keys[0], WITHDRAWAL, native(signer, value=10**20, fee=9 * 10**9, tip=3 * 10**9))) == \
        "replacement_not_allowed"
    assert {row[1] for row in signer.journal.refusals(WITHDRAWAL)} == {"replacement_not_allowed"}


def test_the_signature_is_byte_for_byte_eth_accounts(signer, keys) -> None:
    from bip_utils import Bip32Secp256k1

    unsigned = native(signer, nonce=42)
    signed = ask(signer, keys[0], WITHDRAWAL, unsigned)
    private = Bip32Secp256k1.FromSeed(SEED).DerivePath(f"m/44'/60'/{CHAIN.hot_account}'/0/0").PrivateKey().Raw() \
        .ToBytes()
    reference = Account.sign_transaction(unsigned.for_signing(), private)
    assert isinstance(signed, Signed)
    assert signed.raw_tx == "0x" + reference.raw_transaction.hex()
    assert signed.tx_hash == "0x" + reference.hash.hex()
