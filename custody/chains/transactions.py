"""EVM withdrawal transactions: built here, signed only by the signer, checked here before broadcast.

The withdrawal service never assembles a transaction by hand: ``payment_tx`` builds the EIP-1559
transaction of a native or ERC-20 payment (the token's ``transfer``), and ``check_signed``
proves that what the signer returned is exactly that transaction, signed by the hot wallet —
a reply on the custody queue is not trusted because it arrived there.
"""

from __future__ import annotations

from dataclasses import dataclass

from eth_account import Account
from eth_account.typed_transactions import TypedTransaction
from eth_utils import keccak, to_checksum_address
from hexbytes import HexBytes

from core.sign_requests import UnsignedTx, erc20_transfer_data
from custody.chains.base import FeeQuote


class SignedTxMismatch(ValueError):
    """The signed transaction is not the one requested, or not signed by the expected wallet."""


@dataclass(frozen=True)
class Fees:
    max_fee_per_gas: int
    max_priority_fee_per_gas: int

    @classmethod
    def quote(cls, quote: FeeQuote, min_priority_fee: int) -> Fees:
        tip = max(quote.priority_fee, min_priority_fee)
        return cls(quote.max_fee(min_priority_fee), tip)

    def bumped(self, percent: int, floor: Fees | None = None) -> Fees:
        """At least ``percent`` above these fees on both fields (nodes want ≥ 10 % to replace), and at
        least ``floor`` (today's quote) when that is higher."""
        fee = self.max_fee_per_gas * (100 + percent) // 100 + 1
        tip = self.max_priority_fee_per_gas * (100 + percent) // 100 + 1
        if floor is not None:
            fee, tip = max(fee, floor.max_fee_per_gas), max(tip, floor.max_priority_fee_per_gas)
        return Fees(max(fee, tip), tip)


def payment_call(destination: str, amount: int, token: str | None) -> tuple[str, int, str]:
    """``(to, value, data)`` of a payment of ``amount`` (minor units) of the native coin, or of ``token``."""
    destination = to_checksum_address(destination)
    if token is None:
        return destination, amount, "0x"
    return to_checksum_address(token), 0, erc20_transfer_data(destination, amount)


def payment_tx(*, chain_id: int, sender: str, nonce: int, destination: str, amount: int, token: str | None,
               gas: int, fees: Fees) -> UnsignedTx:
    """The unsigned transaction paying ``amount`` (minor units) of the native coin, or of ``token``."""
    to, value, data = payment_call(destination, amount, token)
    return UnsignedTx(chain_id=chain_id, sender=to_checksum_address(sender), nonce=nonce, to=to, value=value,
                      data=data, gas=gas, max_fee_per_gas=fees.max_fee_per_gas,
                      max_priority_fee_per_gas=fees.max_priority_fee_per_gas)


def tx_hash(raw_tx: str) -> str:
    return "0x" + keccak(HexBytes(raw_tx)).hex()


def decode_signed(raw_tx: str) -> UnsignedTx:
    """What a signed transaction says, its ``sender`` recovered from the signature; ``SignedTxMismatch``
    for anything but a plain EIP-1559 transaction (type 2, no access list) that decodes and recovers."""
    try:
        raw = HexBytes(raw_tx)
        decoded = TypedTransaction.from_bytes(raw).as_dict()
        signer = Account.recover_transaction(raw)
        fields = UnsignedTx(
            chain_id=decoded["chainId"], sender=signer, nonce=decoded["nonce"],
            to=to_checksum_address(HexBytes(decoded["to"])), value=decoded["value"],
            data="0x" + HexBytes(decoded["data"]).hex(), gas=decoded["gas"], max_fee_per_gas=decoded["maxFeePerGas"],
            max_priority_fee_per_gas=decoded["maxPriorityFeePerGas"],
        )
    except Exception as error:  # eth-account raises several unrelated types for garbage bytes
        raise SignedTxMismatch(f"not a signed EIP-1559 transaction: {type(error).__name__}") from None
    if decoded.get("type") != 2 or decoded.get("accessList"):
        raise SignedTxMismatch("not a plain EIP-1559 transaction (type 2, no access list)")
    return fields


def check_signed(raw_tx: str, expected: UnsignedTx) -> str:
    """The hash of ``raw_tx`` if it is ``expected`` signed by ``expected.sender``; ``SignedTxMismatch`` if not."""
    fields = decode_signed(raw_tx)
    if fields != expected:
        raise SignedTxMismatch("the signed transaction differs from the one requested")
    return tx_hash(raw_tx)
