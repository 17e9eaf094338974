"""The signer's side of signed replies, and what the hot wallet of before the move may still sign."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
from bip_utils import Bip32Secp256k1, Bip39SeedGenerator
from eth_account import Account

from core.sanctions import SanctionsList
from core.settings import ChainSettings, WithdrawalLimit
from core.sign_requests import (
    REFUSED_ACTOR,
    REFUSED_REPLY,
    SIGNED_ACTOR,
    SIGNED_REPLY,
    UnsignedTx,
    reply_verifies,
    request_digest,
)
from core.signing import generate_keypair, load_public_key
from custody.chains.transactions import check_signed
from custody.withdrawals.authorization import _parse, authorize
from signer.daemon import reply_for
from signer.derivation import signer_key
from signer.journal import Journal, Signature
from signer.policy import Policy
from signer.service import Refused, Signed, Signer

SEED = Bip39SeedGenerator("test test test test test test test test test test test junk").Generate("")
CHAIN = ChainSettings(name="ethereum", chain_id=31337, rpc_url="http://127.0.0.1:1", native="ETH", account=0)
DESTINATION = "0x70997970C51812dc3A010C7d01b50e0d17dc79C8"
WITHDRAWAL = "00000000-0000-4000-8000-000000000001"
MOVE = "00000000-0000-4000-8000-0000000000f0"
LIMITS = {"ETH": WithdrawalLimit(decimals=18, single="2", daily="3")}
ETH = 10**18


@pytest.fixture
def keys() -> tuple[str, str]:
    return generate_keypair()


@pytest.fixture
def signer(tmp_path: Path, keys) -> Signer:
    sanctions = tmp_path / "sanctions.txt"
    sanctions.write_text("# empty\n")
    policy = Policy([CHAIN], LIMITS, SanctionsList(sanctions))
    return Signer(SEED, [CHAIN], policy, Journal(tmp_path / "journal.sqlite3"), load_public_key(keys[1]))


def retired_key() -> bytes:
    return Bip32Secp256k1.FromSeed(SEED).DerivePath("m/44'/60'/0'/1/0").PrivateKey().Raw().ToBytes()


def ask(signer: Signer, private_pem: str, withdrawal: str, unsigned: UnsignedTx) -> Signed | Refused:
    text = unsigned.canonical()
    return signer.handle(withdrawal, text, authorize(_parse(private_pem), withdrawal, text))


def payment(sender: str, *, to: str = DESTINATION, value: int = ETH, nonce: int = 0, fee: int = 3 * 10**9,
            tip: int = 10**9) -> UnsignedTx:
    return UnsignedTx(chain_id=31337, sender=sender, nonce=nonce, to=to, value=value, data="0x", gas=21_000,
                      max_fee_per_gas=fee, max_priority_fee_per_gas=tip)


def test_every_reply_is_signed_by_the_signer_key(signer, keys) -> None:
    key = signer_key(SEED)
    public = key.public_key()
    signed = ask(signer, keys[0], WITHDRAWAL, payment(signer.hot_wallet(31337)))
    refused = ask(signer, keys[0], "00000000-0000-4000-8000-000000000002",
                  payment(signer.hot_wallet(31337), nonce=1, value=5 * ETH))
    assert isinstance(signed, Signed) and isinstance(refused, Refused)
    for outcome, actor, kind in ((signed, SIGNED_ACTOR, SIGNED_REPLY), (refused, REFUSED_ACTOR, REFUSED_REPLY)):
        message = reply_for(outcome, key)
        assert message.actor_name == actor
        withdrawal_id, digest, first, second, signature = message.args
        assert reply_verifies(public, kind, withdrawal_id, digest, (first, second), signature)
        # Bound to every field, the kind and the key.
        assert not reply_verifies(public, kind, withdrawal_id, digest, (first, second + "0"), signature)
        assert not reply_verifies(public, kind, WITHDRAWAL[:-1] + "9", digest, (first, second), signature)
        assert not reply_verifies(public, kind, withdrawal_id, "0" * 64, (first, second), signature)
        other_kind = REFUSED_REPLY if kind == SIGNED_REPLY else SIGNED_REPLY
        assert not reply_verifies(public, other_kind, withdrawal_id, digest, (first, second), signature)
        assert not reply_verifies(signer_key(bytes(64)).public_key(), kind, withdrawal_id, digest, (first, second),
                                  signature)


def test_the_hot_wallet_is_on_its_own_hardened_account(signer) -> None:
    root = Bip32Secp256k1.FromSeed(SEED)
    expected = root.DerivePath(f"m/44'/60'/{CHAIN.hot_account}'/0/0").PrivateKey().Raw().ToBytes()
    assert signer.hot_wallet(31337) == Account.from_key(expected).address
    assert signer.hot_wallet(31337) != Account.from_key(retired_key()).address


def test_the_retired_hot_wallet_pays_only_the_new_hot_wallet(signer, keys) -> None:
    retired = Account.from_key(retired_key()).address
    refused = ask(signer, keys[0], WITHDRAWAL, payment(retired))
    assert isinstance(refused, Refused) and refused.reason == "wrong_sender"

    # Its whole balance to the new hot wallet: money that stays in custody, so no limit applies.
    move = payment(retired, to=signer.hot_wallet(31337), value=400 * ETH, nonce=3)
    moved = ask(signer, keys[0], MOVE, move)
    assert isinstance(moved, Signed), moved
    assert check_signed(moved.raw_tx, move) == moved.tx_hash  # signed by the retired key itself
    # ...and it does not eat the day's limit of customer withdrawals.
    assert isinstance(ask(signer, keys[0], "00000000-0000-4000-8000-000000000003",
                          payment(signer.hot_wallet(31337), value=2 * ETH)), Signed)


def test_a_payment_signed_from_the_retired_hot_wallet_can_still_be_bumped(signer, keys) -> None:
    retired = Account.from_key(retired_key()).address
    before_the_move = payment(retired, nonce=9)
    raw = Account.sign_transaction(before_the_move.for_signing(), retired_key())
    text = before_the_move.canonical()
    with signer.journal.lock:
        signer.journal.record(Signature(WITHDRAWAL, request_digest(text), 31337, retired, 9, "ETH", ETH,
                                        before_the_move.max_fee_per_gas, before_the_move.max_priority_fee_per_gas,
                                        text, raw.raw_transaction.to_0x_hex(), raw.hash.to_0x_hex()),
                              DESTINATION, first=True)
    bump = replace(before_the_move, max_fee_per_gas=6 * 10**9, max_priority_fee_per_gas=2 * 10**9)
    bumped = ask(signer, keys[0], WITHDRAWAL, bump)
    assert isinstance(bumped, Signed), bumped
    assert check_signed(bumped.raw_tx, bump) == bumped.tx_hash
