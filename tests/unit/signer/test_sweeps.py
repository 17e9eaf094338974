"""Sweeps and gas top-ups as the signer checks them on its own: the derived deposit address, its own
hot wallet, the gas a top-up may carry, the fee caps, the journal — with a real key and a real SQLite file."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
from bip_utils import Bip32Secp256k1

from core.settings import FeeCaps
from core.sign_requests import UnsignedTx, erc20_transfer_data
from core.sweep_requests import SWEEP, TOPUP
from custody.chains.transactions import check_signed
from custody.hd import deposit_address
from custody.treasury.requests import authorize_sweep
from custody.withdrawals.authorization import _parse
from signer.service import Refused, Signed, Signer
from signer.sweeps import SweepSigner
from tests.unit.signer.test_service import (
    CHAIN,
    DESTINATION,
    SEED,
    USDC,
    WITHDRAWAL,
    ask,
    keys,  # noqa: F401 - fixture
    make_signer,
    native,
    reason,
)

GWEI = 10**9
TOKEN_GAS = 100_000
INDEX = 7
SWEEP_ID = "00000000-0000-4000-8000-00000000a001"
TOPUP_ID = "00000000-0000-4000-8000-00000000a002"
FEE, TIP = 3 * GWEI, GWEI


def deposit(index: int = INDEX) -> str:
    """What the allocator derives from the exported xpub: the signer must find the same address."""
    xpub = Bip32Secp256k1.FromSeed(SEED).DerivePath(f"m/44'/60'/{CHAIN.account}'").PublicKey().ToExtended()
    return deposit_address(xpub, index)


@pytest.fixture
def sweeps(tmp_path: Path, keys: tuple[str, str]) -> SweepSigner:  # noqa: F811
    return make_sweeps(tmp_path, keys[1])


def make_sweeps(tmp_path: Path, public_key: str, fee_caps: dict[str, FeeCaps] | None = None) -> SweepSigner:
    signer: Signer = make_signer(tmp_path, public_key, fee_caps=fee_caps)
    return SweepSigner(signer, signer._request_key, token_gas_limit=TOKEN_GAS)


def sweep_tx(sweeps: SweepSigner, *, sender: str | None = None, to: str | None = None, value: int = 10**18,
             nonce: int = 0, fee: int = FEE, tip: int = TIP) -> UnsignedTx:
    return UnsignedTx(chain_id=31337, sender=sender or deposit(), nonce=nonce,
                      to=to or sweeps.signer.hot_wallet(31337), value=value, data="0x", gas=21_000,
                      max_fee_per_gas=fee, max_priority_fee_per_gas=tip)


def token_sweep_tx(sweeps: SweepSigner, *, destination: str | None = None, amount: int = 250 * 10**6,
                   fee: int = FEE) -> UnsignedTx:
    return UnsignedTx(chain_id=31337, sender=deposit(), nonce=0, to=USDC, value=0,
                      data=erc20_transfer_data(destination or sweeps.signer.hot_wallet(31337), amount),
                      gas=TOKEN_GAS, max_fee_per_gas=fee, max_priority_fee_per_gas=TIP)


def topup_tx(sweeps: SweepSigner, *, value: int = TOKEN_GAS * FEE, to: str | None = None, sender: str | None = None,
             nonce: int = 0, fee: int = FEE) -> UnsignedTx:
    return UnsignedTx(chain_id=31337, sender=sender or sweeps.signer.hot_wallet(31337), nonce=nonce,
                      to=to or deposit(), value=value, data="0x", gas=21_000, max_fee_per_gas=fee,
                      max_priority_fee_per_gas=TIP)


def request(sweeps: SweepSigner, private_pem: str, request_id: str, kind: str, unsigned: UnsignedTx,
            index: int = INDEX) -> Signed | Refused:
    text = unsigned.canonical()
    return sweeps.handle(request_id, kind, index, text, authorize_sweep(_parse(private_pem), request_id, kind, index,
                                                                         text))


def test_the_signer_derives_the_allocators_address_for_the_index(sweeps) -> None:
    assert sweeps.signer.deposit_wallet(31337, INDEX) == deposit()
    assert sweeps.signer.deposit_wallet(31337, INDEX + 1) == deposit(INDEX + 1) != deposit()


def test_a_native_and_a_token_sweep_above_every_value_limit_are_signed_by_the_deposit_key(sweeps, keys) -> None:
    # 40 ETH: far above the withdrawal limits (single 2, daily 3); sweeps count against none of them.
    native_sweep = sweep_tx(sweeps, value=40 * 10**18)
    signed = request(sweeps, keys[0], SWEEP_ID, SWEEP, native_sweep)
    assert isinstance(signed, Signed) and not signed.repeated
    assert check_signed(signed.raw_tx, native_sweep) == signed.tx_hash  # recovered sender: the deposit address
    again = request(sweeps, keys[0], SWEEP_ID, SWEEP, native_sweep)
    assert isinstance(again, Signed) and again.repeated and again.raw_tx == signed.raw_tx
    token = replace(token_sweep_tx(sweeps, amount=10**12), nonce=1)
    assert isinstance(request(sweeps, keys[0], "00000000-0000-4000-8000-00000000a003", SWEEP, token), Signed)
    # The limits are untouched: a 2 ETH withdrawal still fits the daily 3.
    assert isinstance(ask(sweeps.signer, keys[0], WITHDRAWAL, native(sweeps.signer, value=2 * 10**18)), Signed)


def test_a_sweep_from_another_address_than_the_index_names_is_refused(sweeps, keys) -> None:
    assert reason(request(sweeps, keys[0], SWEEP_ID, SWEEP, sweep_tx(sweeps, sender=deposit(INDEX + 1)))) \
        == "wrong_sender"
    # The hot wallet is no deposit address either.
    hot = sweeps.signer.hot_wallet(31337)
    assert reason(request(sweeps, keys[0], "00000000-0000-4000-8000-00000000a004", SWEEP,
                          sweep_tx(sweeps, sender=hot, to=deposit()))) == "wrong_sender"


def test_a_sweep_anywhere_but_the_hot_wallet_is_refused(sweeps, keys) -> None:
    assert reason(request(sweeps, keys[0], SWEEP_ID, SWEEP, sweep_tx(sweeps, to=DESTINATION))) == "wrong_destination"
    assert reason(request(sweeps, keys[0], "00000000-0000-4000-8000-00000000a005", SWEEP,
                          token_sweep_tx(sweeps, destination=DESTINATION))) == "wrong_destination"
    # Nor a deposit address sweeping into another deposit address.
    assert reason(request(sweeps, keys[0], "00000000-0000-4000-8000-00000000a006", SWEEP,
                          sweep_tx(sweeps, to=deposit(INDEX + 1)))) == "wrong_destination"


def test_a_top_up_of_exactly_the_gas_of_one_token_transfer_is_signed_by_the_hot_wallet(sweeps, keys) -> None:
    unsigned = topup_tx(sweeps)
    signed = request(sweeps, keys[0], TOPUP_ID, TOPUP, unsigned)
    assert isinstance(signed, Signed)
    assert check_signed(signed.raw_tx, unsigned) == signed.tx_hash
    # A fee bump of it (same payment, higher fees, same id and nonce) is allowed; a second top-up at
    # another nonce under the same id is not.
    bumped = replace(unsigned, max_fee_per_gas=2 * FEE, max_priority_fee_per_gas=2 * TIP)
    assert isinstance(request(sweeps, keys[0], TOPUP_ID, TOPUP, bumped), Signed)
    assert reason(request(sweeps, keys[0], TOPUP_ID, TOPUP, replace(unsigned, nonce=1))) \
        == "withdrawal_signed_elsewhere"


def test_a_top_up_above_the_gas_amount_is_refused(sweeps, keys) -> None:
    assert reason(request(sweeps, keys[0], TOPUP_ID, TOPUP, topup_tx(sweeps, value=TOKEN_GAS * FEE + 1))) \
        == "topup_above_gas"


def test_a_top_up_above_the_fee_cap_of_a_transfer_is_refused(tmp_path, keys) -> None:
    caps = {"ethereum": FeeCaps(max_gas=200_000, max_fee_per_gas=500 * GWEI, max_priority_fee_per_gas=50 * GWEI,
                                max_fee_per_tx=TOKEN_GAS * FEE // 2, daily_fee_budget=10**18)}
    sweeps = make_sweeps(tmp_path, keys[1], fee_caps=caps)
    assert reason(request(sweeps, keys[0], TOPUP_ID, TOPUP, topup_tx(sweeps))) == "topup_above_gas"
    # What the cap lets one transfer cost is signed (a new request: the refused one stays refused).
    within = topup_tx(sweeps, value=TOKEN_GAS * FEE // 2)
    assert isinstance(request(sweeps, keys[0], "00000000-0000-4000-8000-00000000a00d", TOPUP, within), Signed)


def test_a_top_up_to_another_address_or_from_a_deposit_address_is_refused(sweeps, keys) -> None:
    assert reason(request(sweeps, keys[0], TOPUP_ID, TOPUP, topup_tx(sweeps, to=DESTINATION))) == "wrong_destination"
    assert reason(request(sweeps, keys[0], "00000000-0000-4000-8000-00000000a007", TOPUP,
                          topup_tx(sweeps, to=deposit(INDEX + 1)))) == "wrong_destination"
    assert reason(request(sweeps, keys[0], "00000000-0000-4000-8000-00000000a008", TOPUP,
                          topup_tx(sweeps, sender=deposit(INDEX + 1)))) == "wrong_sender"
    # Tokens are never a top-up.
    token = replace(topup_tx(sweeps, value=0), to=USDC, data=erc20_transfer_data(deposit(), 10), gas=TOKEN_GAS)
    assert reason(request(sweeps, keys[0], "00000000-0000-4000-8000-00000000a009", TOPUP, token)) == "unknown_asset"


def test_fees_above_the_caps_are_refused_for_sweeps_and_top_ups(sweeps, keys) -> None:
    assert reason(request(sweeps, keys[0], SWEEP_ID, SWEEP, sweep_tx(sweeps, fee=501 * GWEI))) == "max_fee_above_cap"
    assert reason(request(sweeps, keys[0], TOPUP_ID, TOPUP, topup_tx(sweeps, fee=501 * GWEI))) == "max_fee_above_cap"
    gas_hog = replace(sweep_tx(sweeps), gas=200_001)
    assert reason(request(sweeps, keys[0], "00000000-0000-4000-8000-00000000a00a", SWEEP, gas_hog)) \
        == "gas_limit_above_cap"


def test_an_authorization_of_another_kind_index_or_domain_is_refused(sweeps, keys) -> None:
    unsigned = sweep_tx(sweeps)
    text = unsigned.canonical()
    key = _parse(keys[0])
    as_topup = authorize_sweep(key, SWEEP_ID, TOPUP, INDEX, text)
    assert reason(sweeps.handle(SWEEP_ID, SWEEP, INDEX, text, as_topup)) == "invalid_authorization"
    other_index = authorize_sweep(key, SWEEP_ID, SWEEP, INDEX + 1, text)
    assert reason(sweeps.handle(SWEEP_ID, SWEEP, INDEX, text, other_index)) == "invalid_authorization"
    from custody.withdrawals.authorization import (
        authorize,  # a withdrawal's authorization of the same bytes
    )
    assert reason(sweeps.handle(SWEEP_ID, SWEEP, INDEX, text, authorize(key, SWEEP_ID, text))) \
        == "invalid_authorization"
    # Forged requests are not sticky: the genuine one is still signed.
    assert isinstance(request(sweeps, keys[0], SWEEP_ID, SWEEP, unsigned), Signed)


def test_malformed_kinds_and_indexes_are_refused_as_malformed(sweeps, keys) -> None:
    text = sweep_tx(sweeps).canonical()
    for kind, index in (("cold", INDEX), (SWEEP, -1), (SWEEP, 2**31), (SWEEP, "7"), (SWEEP, True)):
        assert reason(sweeps.handle(SWEEP_ID, kind, index, text, "x")) == "malformed_request"


def test_one_nonce_one_request_and_a_refused_request_stays_refused(sweeps, keys) -> None:
    assert isinstance(request(sweeps, keys[0], SWEEP_ID, SWEEP, sweep_tx(sweeps)), Signed)
    # Another request at the same nonce of the same deposit address: taken.
    assert reason(request(sweeps, keys[0], "00000000-0000-4000-8000-00000000a00b", SWEEP,
                          sweep_tx(sweeps, value=10**17))) == "nonce_taken"
    # A top-up's nonce is the hot wallet's, the same sequence as withdrawals'.
    assert isinstance(ask(sweeps.signer, keys[0], WITHDRAWAL, native(sweeps.signer)), Signed)
    assert reason(request(sweeps, keys[0], TOPUP_ID, TOPUP, topup_tx(sweeps))) == "nonce_taken"
    over = topup_tx(sweeps, nonce=1, value=TOKEN_GAS * FEE + 1)
    assert reason(request(sweeps, keys[0], "00000000-0000-4000-8000-00000000a00c", TOPUP, over)) == "topup_above_gas"
    assert reason(request(sweeps, keys[0], "00000000-0000-4000-8000-00000000a00c", TOPUP, over)) == "topup_above_gas"
    refusals = sweeps.journal.refusals("00000000-0000-4000-8000-00000000a00c")
    assert len(refusals) == 1  # the repeat is answered from the journal, not recorded again
