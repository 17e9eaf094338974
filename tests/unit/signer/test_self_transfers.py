"""The journal's one exception besides fee bumps: per nonce, one 0-value transfer from the hot wallet to
itself — a filler of a nonce nothing was signed at, or the cancel of the withdrawal signed there —
paying at least 10 % more per gas than every earlier transaction at that nonce."""

from __future__ import annotations

from dataclasses import replace

from core.sign_requests import UnsignedTx
from signer.service import Signed, Signer
from tests.unit.signer.test_service import OTHER, WITHDRAWAL, ask, native, reason
from tests.unit.signer.test_service import keys, signer  # noqa: F401 - fixtures

GWEI = 10**9
FILLER = "00000000-0000-4000-8000-0000000000f1"
SECOND_FILLER = "00000000-0000-4000-8000-0000000000f2"


def self_transfer(signer: Signer, *, nonce: int, fee: int, tip: int) -> UnsignedTx:
    return replace(native(signer, nonce=nonce, fee=fee, tip=tip), to=signer.hot_wallet(31337), value=0)


def test_a_filler_takes_a_nonce_nothing_was_signed_at_once(signer, keys) -> None:
    filler = self_transfer(signer, nonce=3, fee=3 * GWEI, tip=GWEI)
    first = ask(signer, keys[0], FILLER, filler)
    assert isinstance(first, Signed)
    again = ask(signer, keys[0], FILLER, filler)
    assert isinstance(again, Signed) and again.repeated and again.raw_tx == first.raw_tx
    # One self-transfer per nonce, whoever asks and whatever it pays.
    assert reason(ask(signer, keys[0], SECOND_FILLER, self_transfer(signer, nonce=3, fee=9 * GWEI, tip=3 * GWEI))) \
        == "nonce_taken"
    assert reason(ask(signer, keys[0], FILLER, self_transfer(signer, nonce=3, fee=9 * GWEI, tip=3 * GWEI))) == \
        "replacement_not_allowed"
    # A filled nonce pays nobody, ever; the filler's id names nothing else.
    assert reason(ask(signer, keys[0], WITHDRAWAL, native(signer, nonce=3, fee=9 * GWEI, tip=3 * GWEI))) == \
        "nonce_taken"
    assert reason(ask(signer, keys[0], FILLER, native(signer, nonce=3, fee=9 * GWEI, tip=3 * GWEI))) == \
        "replacement_not_allowed"
    assert reason(ask(signer, keys[0], FILLER, self_transfer(signer, nonce=4, fee=3 * GWEI, tip=GWEI))) == \
        "withdrawal_signed_elsewhere"


def test_a_cancel_replaces_the_payment_at_its_nonce_with_fees_ten_percent_higher(signer, keys) -> None:
    assert isinstance(ask(signer, keys[0], WITHDRAWAL, native(signer, nonce=5, fee=10 * GWEI, tip=2 * GWEI)), Signed)
    assert isinstance(ask(signer, keys[0], WITHDRAWAL, native(signer, nonce=5, fee=20 * GWEI, tip=4 * GWEI)), Signed)

    # 10 % above the first transaction is not enough: every earlier one counts (the bump pays 20 gwei).
    assert reason(ask(signer, keys[0], WITHDRAWAL, self_transfer(signer, nonce=5, fee=22 * GWEI - 1, tip=5 * GWEI))) \
        == "replacement_not_allowed"
    assert reason(ask(signer, keys[0], WITHDRAWAL, self_transfer(signer, nonce=5, fee=30 * GWEI, tip=4 * GWEI))) \
        == "replacement_not_allowed"  # the tip did not rise by 10 %
    # Another id cannot cancel a withdrawal's nonce: a cancel carries the id of what it cancels.
    assert reason(ask(signer, keys[0], OTHER, self_transfer(signer, nonce=5, fee=30 * GWEI, tip=5 * GWEI))) == \
        "nonce_taken"
    cancel = ask(signer, keys[0], WITHDRAWAL, self_transfer(signer, nonce=5, fee=22 * GWEI, tip=5 * GWEI))
    assert isinstance(cancel, Signed)

    # Nothing else at that nonce afterwards: no bump of the payment, no second self-transfer.
    assert reason(ask(signer, keys[0], WITHDRAWAL, native(signer, nonce=5, fee=40 * GWEI, tip=8 * GWEI))) == \
        "replacement_not_allowed"
    assert reason(ask(signer, keys[0], WITHDRAWAL, self_transfer(signer, nonce=5, fee=40 * GWEI, tip=8 * GWEI))) \
        == "replacement_not_allowed"
    assert len(signer.journal.at_nonce(31337, signer.hot_wallet(31337), 5)) == 3


def test_a_cancel_is_only_at_the_withdrawals_own_nonce(signer, keys) -> None:
    assert isinstance(ask(signer, keys[0], WITHDRAWAL, native(signer, nonce=6)), Signed)
    assert reason(ask(signer, keys[0], WITHDRAWAL, self_transfer(signer, nonce=7, fee=9 * GWEI, tip=3 * GWEI))) == \
        "withdrawal_signed_elsewhere"


def test_a_transfer_to_the_hot_wallet_with_value_is_a_payment_not_a_cancel(signer, keys) -> None:
    assert isinstance(ask(signer, keys[0], WITHDRAWAL, native(signer, nonce=8)), Signed)
    paying = replace(self_transfer(signer, nonce=8, fee=9 * GWEI, tip=3 * GWEI), value=1)
    assert reason(ask(signer, keys[0], WITHDRAWAL, paying)) == "replacement_not_allowed"
