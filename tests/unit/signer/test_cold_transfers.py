"""Hot → cold: the signer pays the surplus of its hot wallet only to the cold wallet of its own configuration.

The value limits of withdrawals do not apply (the money stays in custody); the authorization of its own
kind, the fee caps, the journal and the nonce rules do.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from core.sanctions import SanctionsList
from core.settings import FeeCaps
from core.sign_requests import UnsignedTx, erc20_transfer_data
from core.signing import load_public_key
from custody.chains.transactions import check_signed
from custody.treasury.hot_cold import authorize_cold_transfer
from custody.withdrawals.authorization import _parse, authorize
from signer.journal import Journal
from signer.policy import Policy
from signer.service import Refused, Signed, Signer
from tests.unit.signer.test_service import (
    CHAIN,
    DESTINATION,
    LIMITS,
    OTHER,
    SANCTIONED,
    SEED,
    USDC,
    WITHDRAWAL,
    ask,
    keys,  # noqa: F401 - fixture
    native,
    reason,
)

COLD = "0xa0Ee7A142d267C1f36714E4a8F75612F20a79720"  # Anvil's dev account 9: devnet only
ETH = 10**18


def cold_signer(tmp_path: Path, public_key: str, cold_wallets: dict[str, str] | None = None,
                fee_caps: dict[str, FeeCaps] | None = None) -> Signer:
    tmp_path.mkdir(parents=True, exist_ok=True)
    sanctions = tmp_path / "sanctions.txt"
    sanctions.write_text(f"{SANCTIONED}\n")
    policy = Policy([CHAIN], LIMITS, SanctionsList(sanctions), fee_caps=fee_caps,
                    cold_wallets={"ethereum": COLD} if cold_wallets is None else cold_wallets)
    return Signer(SEED, [CHAIN], policy, Journal(tmp_path / "journal.sqlite3"), load_public_key(public_key))


def ask_cold(signer: Signer, private_pem: str, transfer: str, unsigned: UnsignedTx) -> Signed | Refused:
    text = unsigned.canonical()
    return signer.handle_cold_transfer(transfer, text, authorize_cold_transfer(_parse(private_pem), transfer, text))


def test_the_surplus_goes_to_the_configured_cold_wallet_above_every_value_limit(tmp_path, keys) -> None:
    signer = cold_signer(tmp_path, keys[1])
    # 40 ETH: far above the single limit (2) and the daily limit (3) of a withdrawal.
    unsigned = native(signer, to=COLD, value=40 * ETH)
    signed = ask_cold(signer, keys[0], WITHDRAWAL, unsigned)
    assert isinstance(signed, Signed)
    assert check_signed(signed.raw_tx, unsigned) == signed.tx_hash
    again = ask_cold(signer, keys[0], WITHDRAWAL, unsigned)
    assert isinstance(again, Signed) and again.repeated and again.raw_tx == signed.raw_tx
    # It counted against no limit: a withdrawal of 2 ETH still fits the daily 3.
    assert isinstance(ask(signer, keys[0], OTHER, native(signer, nonce=1, value=2 * ETH)), Signed)
    # Tokens too: a transfer(cold, amount) call to a configured token contract.
    token = replace(native(signer, nonce=2, to=USDC, value=0), data=erc20_transfer_data(COLD, 10**12), gas=100_000)
    assert isinstance(ask_cold(signer, keys[0], "00000000-0000-4000-8000-0000000000c1", token), Signed)


def test_the_signer_refuses_hot_to_cold_to_any_other_address(tmp_path, keys) -> None:
    signer = cold_signer(tmp_path, keys[1])
    for nonce, destination in enumerate((DESTINATION, SANCTIONED, signer.hot_wallet(31337))):
        outcome = ask_cold(signer, keys[0], f"00000000-0000-4000-8000-00000000000{nonce}",
                           native(signer, nonce=nonce, to=destination, value=ETH))
        assert reason(outcome) == "not_cold_wallet", outcome
    # A token transfer to another address, though its `to` is the token contract.
    token = replace(native(signer, to=USDC, value=0), data=erc20_transfer_data(DESTINATION, 10**6), gas=100_000)
    assert reason(ask_cold(signer, keys[0], "00000000-0000-4000-8000-0000000000c2", token)) == "not_cold_wallet"
    # The platform's settings cannot name the cold wallet: a signer without its own copy refuses everything.
    unconfigured = cold_signer(tmp_path / "unconfigured", keys[1], cold_wallets={})
    assert reason(ask_cold(unconfigured, keys[0], WITHDRAWAL, native(unconfigured, to=COLD))) == "not_cold_wallet"
    assert signer.journal.refusals()[0][1] == "not_cold_wallet"


def test_a_cold_transfer_needs_the_authorization_of_its_own_kind(tmp_path, keys) -> None:
    signer = cold_signer(tmp_path, keys[1])
    unsigned = native(signer, to=COLD, value=40 * ETH)
    text = unsigned.canonical()
    # A withdrawal's authorization of the same transaction is no cold transfer's, and the reverse.
    assert reason(signer.handle_cold_transfer(WITHDRAWAL, text, authorize(_parse(keys[0]), WITHDRAWAL, text))) == \
        "invalid_authorization"
    cold_authorization = authorize_cold_transfer(_parse(keys[0]), WITHDRAWAL, text)
    assert reason(signer.handle(WITHDRAWAL, text, cold_authorization)) == "invalid_authorization"
    # As a withdrawal the same 40 ETH meets the value limits: the cold wallet is no way around them.
    assert reason(ask(signer, keys[0], WITHDRAWAL, unsigned)) == "single_limit_exceeded"


def test_fee_caps_journal_and_nonces_apply_to_cold_transfers(tmp_path, keys) -> None:
    caps = {"ethereum": FeeCaps(max_gas=200_000, max_fee_per_gas=10 * 10**9, max_priority_fee_per_gas=2 * 10**9,
                                max_fee_per_tx=10**16, daily_fee_budget=10**18)}
    signer = cold_signer(tmp_path, keys[1], fee_caps=caps)
    assert reason(ask_cold(signer, keys[0], WITHDRAWAL, native(signer, to=COLD, fee=11 * 10**9))) == \
        "max_fee_above_cap"
    # A nonce signed for a withdrawal is not the cold transfer's, nor the reverse.
    assert isinstance(ask(signer, keys[0], OTHER, native(signer, nonce=4)), Signed)
    cold = "00000000-0000-4000-8000-0000000000c3"
    assert reason(ask_cold(signer, keys[0], cold, native(signer, nonce=4, to=COLD))) == "nonce_taken"
    assert isinstance(ask_cold(signer, keys[0], cold, native(signer, nonce=5, to=COLD)), Signed)
    assert reason(ask(signer, keys[0], "00000000-0000-4000-8000-0000000000c4", native(signer, nonce=5))) == \
        "nonce_taken"
    # One transfer, one nonce.
    assert reason(ask_cold(signer, keys[0], cold, native(signer, nonce=6, to=COLD))) == "withdrawal_signed_elsewhere"
