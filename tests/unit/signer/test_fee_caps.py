"""The signer's fee caps: what one transaction may spend on gas, what a chain's transactions may spend
in 24 hours, and how often one nonce may be replaced — whatever the payment's value."""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path

import pytest

from core.settings import FeeCaps
from signer.journal import DAY_SECONDS, Journal
from signer.service import Signed, Signer
from tests.unit.signer.test_service import OTHER, WITHDRAWAL, ask, make_signer, native, reason
from tests.unit.signer.test_service import keys  # noqa: F401 - fixtures

GWEI = 10**9
THIRD = "00000000-0000-4000-8000-000000000003"
FOURTH = "00000000-0000-4000-8000-000000000004"
FIFTH = "00000000-0000-4000-8000-000000000005"
# 21 000 gas at 50 gwei: the worst case a plain transfer at these fees may cost.
WORST_CASE = 21_000 * 50 * GWEI
CAPS = FeeCaps(max_gas=100_000, max_fee_per_gas=100 * GWEI, max_priority_fee_per_gas=10 * GWEI,
               max_fee_per_tx=2 * 10**15, daily_fee_budget=3 * WORST_CASE + WORST_CASE // 2, max_replacements=2)


@pytest.fixture
def capped(tmp_path: Path, keys: tuple[str, str]) -> Signer:
    return make_signer(tmp_path, keys[1], fee_caps={"ethereum": CAPS})


def signatures_at(signer: Signer, nonce: int) -> int:
    return len(signer.journal.at_nonce(31337, signer.hot_wallet(31337), nonce))


def test_signer_refuses_fee_above_cap(capped, keys, tmp_path) -> None:
    # One wei to a customer, a fortune to the block builder: inside every value limit, refused on fees.
    drain = native(capped, value=1, fee=10**6 * GWEI, tip=10**6 * GWEI)
    assert reason(ask(capped, keys[0], WITHDRAWAL, drain)) == "max_fee_above_cap"
    cases = {
        "gas_limit_above_cap": replace(native(capped, nonce=1, fee=10 * GWEI), gas=100_001),
        "max_fee_above_cap": native(capped, nonce=2, fee=100 * GWEI + 1),
        "priority_fee_above_cap": native(capped, nonce=3, fee=50 * GWEI, tip=10 * GWEI + 1),
        # 100 000 gas × 50 gwei = 0.005 ETH: each field under its cap, the product above 0.002 ETH.
        "total_fee_above_cap": replace(native(capped, nonce=4, fee=50 * GWEI, value=1), gas=100_000),
    }
    for number, (expected, unsigned) in enumerate(cases.items()):
        withdrawal = f"00000000-0000-4000-8000-00000000010{number}"
        assert reason(ask(capped, keys[0], withdrawal, unsigned)) == expected
    assert all(signatures_at(capped, nonce) == 0 for nonce in range(5))
    refused = {row[1] for row in capped.journal.refusals()}
    assert refused == {"max_fee_above_cap", "gas_limit_above_cap", "priority_fee_above_cap", "total_fee_above_cap"}

    # At every cap exactly (21 000 × 95 gwei ≤ 0.002 ETH): signed.
    at_caps = native(capped, nonce=5, fee=95 * GWEI, tip=10 * GWEI)
    assert isinstance(ask(capped, keys[0], OTHER, at_caps), Signed)

    # A chain without caps is a chain the signer spends nothing on.
    (tmp_path / "uncapped").mkdir()
    uncapped = make_signer(tmp_path / "uncapped", keys[1], fee_caps={})
    assert reason(ask(uncapped, keys[0], WITHDRAWAL, native(uncapped))) == "no_fee_caps"


def test_signer_fee_budget(capped, keys, tmp_path) -> None:
    now = [time.time()]
    capped.journal.clock = lambda: now[0]
    assert isinstance(ask(capped, keys[0], WITHDRAWAL, native(capped, nonce=0, fee=50 * GWEI, value=1)), Signed)
    assert isinstance(ask(capped, keys[0], OTHER, native(capped, nonce=1, fee=50 * GWEI, value=1)), Signed)
    # A fee bump may cost its whole worst case too (which of the two is mined is not known yet).
    bump = native(capped, nonce=1, fee=60 * GWEI, tip=2 * GWEI, value=1)
    assert isinstance(ask(capped, keys[0], OTHER, bump), Signed)
    assert capped.journal.fees_since(31337) == 2 * WORST_CASE + 21_000 * 60 * GWEI

    assert reason(ask(capped, keys[0], THIRD, native(capped, nonce=2, fee=50 * GWEI, value=1))) == \
        "fee_budget_exceeded"
    # Cheaper fees fit in what is left.
    assert isinstance(ask(capped, keys[0], FOURTH, native(capped, nonce=2, fee=10 * GWEI, value=1)), Signed)

    # The journal remembers across a restart…
    restarted = make_signer(tmp_path, keys[1], fee_caps={"ethereum": CAPS})
    restarted.journal.clock = lambda: now[0]
    assert reason(ask(restarted, keys[0], FIFTH, native(restarted, nonce=3, fee=50 * GWEI, value=1))) == \
        "fee_budget_exceeded"
    # …and the window rolls: 24 hours later the budget is whole again.
    now[0] += DAY_SECONDS + 1
    assert restarted.journal.fees_since(31337) == 0
    later = "00000000-0000-4000-8000-000000000006"
    assert isinstance(ask(restarted, keys[0], later, native(restarted, nonce=3, fee=50 * GWEI, value=1)), Signed)


def test_fee_bump_limit(capped, keys) -> None:
    fees = [(20 * GWEI, 1 * GWEI), (25 * GWEI, 2 * GWEI), (30 * GWEI, 3 * GWEI), (40 * GWEI, 4 * GWEI)]
    outcomes = [ask(capped, keys[0], WITHDRAWAL, native(capped, nonce=9, fee=fee, tip=tip)) for fee, tip in fees]
    assert [isinstance(outcome, Signed) for outcome in outcomes[:3]] == [True, True, True]  # the first + 2 bumps
    assert reason(outcomes[3]) == "too_many_replacements"
    assert signatures_at(capped, 9) == 3
    # Nor may anything else replace it then: a cancel is a replacement too.
    cancel = replace(native(capped, nonce=9, fee=50 * GWEI, tip=5 * GWEI), to=capped.hot_wallet(31337), value=0)
    assert reason(ask(capped, keys[0], WITHDRAWAL, cancel)) == "too_many_replacements"


def test_the_devnet_chains_have_fee_caps_by_default() -> None:
    from core.settings import Settings

    caps = Settings().signer_fee_caps
    assert set(caps) >= {"ethereum", "polygon"}
    for chain_caps in caps.values():
        assert chain_caps.max_fee_per_tx <= chain_caps.max_gas * chain_caps.max_fee_per_gas
        assert chain_caps.max_fee_per_tx < chain_caps.daily_fee_budget


def test_fee_caps_are_integers_never_floats() -> None:
    with pytest.raises(ValueError):
        FeeCaps(max_gas=100_000, max_fee_per_gas=1.5e11, max_priority_fee_per_gas=10, max_fee_per_tx=10**15,
                daily_fee_budget=10**16)


def test_a_journal_written_before_fee_caps_counts_its_signatures(tmp_path, keys) -> None:
    signer = make_signer(tmp_path, keys[1], fee_caps={"ethereum": CAPS})
    assert isinstance(ask(signer, keys[0], WITHDRAWAL, native(signer, fee=50 * GWEI)), Signed)
    signer.journal.close()
    assert Journal(tmp_path / "journal.sqlite3").fees_since(31337) == WORST_CASE
