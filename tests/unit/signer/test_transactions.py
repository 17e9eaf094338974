"""The signer's EIP-1559 encoding is eth-account's, byte for byte."""

from __future__ import annotations

import random

import pytest
from eth_account import Account
from eth_keys import keys

from core.sign_requests import UnsignedTx, erc20_transfer_data
from signer import transactions

KEY = bytes.fromhex("4c0883a69102937d6231471b5decb3e7fbb1f7fa1f7f2e5a1d9b3f8c6d5e4a3b")
USDC = "0x5FbDB2315678afecb367f032d93F642f64180aa3"


def random_transactions(count: int) -> list[UnsignedTx]:
    rng = random.Random(20240611)
    sender = Account.from_key(KEY).address
    made = []
    for index in range(count):
        destination = Account.create(extra_entropy=str(index)).address
        big = rng.choice([0, 1, 127, 128, 255, 256, 2**64, 2**255, 2**256 - 1, rng.randrange(2**256)])
        max_fee = rng.choice([0, 1, 3 * 10**9, 2**64 - 1, 2**200])
        tip = rng.randrange(max_fee + 1)
        if index % 3 == 0:
            data, to, value = erc20_transfer_data(destination, big), USDC, 0
        elif index % 3 == 1:
            data, to, value = "0x", destination, big
        else:  # any calldata: eth-account encodes it whatever it says
            data, to, value = "0x" + bytes(rng.randrange(256) for _ in range(rng.randrange(80))).hex(), destination, big
        made.append(UnsignedTx(chain_id=rng.choice([1, 137, 31337, 2**32 + 7]), sender=sender,
                               nonce=rng.choice([0, 1, 55, 2**32, 2**64 - 1]), to=to, value=value, data=data,
                               gas=rng.choice([21_000, 100_000, 2**63]), max_fee_per_gas=max_fee,
                               max_priority_fee_per_gas=tip))
    return made


@pytest.mark.parametrize("unsigned", random_transactions(300), ids=lambda unsigned: str(unsigned.nonce))
def test_the_bytes_and_hash_are_eth_accounts(unsigned: UnsignedTx) -> None:
    reference = Account.sign_transaction(unsigned.for_signing(), KEY)
    raw_tx, tx_hash = transactions.sign(keys.PrivateKey(KEY), unsigned)
    assert raw_tx == reference.raw_transaction.to_0x_hex()
    assert tx_hash == reference.hash.to_0x_hex()


def test_a_destination_with_a_wrong_checksum_is_refused_as_eth_account_refuses_it() -> None:
    (unsigned,) = random_transactions(2)[1:]
    wrong = unsigned.to[:2] + unsigned.to[2:].swapcase()
    bad = UnsignedTx(unsigned.chain_id, unsigned.sender, unsigned.nonce, wrong, unsigned.value, unsigned.data,
                     unsigned.gas, unsigned.max_fee_per_gas, unsigned.max_priority_fee_per_gas)
    with pytest.raises((TypeError, ValueError)):
        Account.sign_transaction(bad.for_signing(), KEY)
    with pytest.raises(ValueError):
        transactions.sign(keys.PrivateKey(KEY), bad)
