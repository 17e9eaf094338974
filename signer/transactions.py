"""The signed bytes of an EIP-1559 (type 2) transaction: what eth-account's ``sign_transaction`` gives.

eth-account builds its typed transaction from a dict twice per signature (once to hash it, once
more with the signature to encode it), validating and reformatting every field each time: most of
the time of a signature, the ECDSA itself a sixth of it. Here the fields of an ``UnsignedTx``,
which ``UnsignedTx.parse`` has already checked strictly (uint256 numbers, 20-byte addresses,
lowercase hex data, the priority fee within the max fee), go straight into the EIP-1559 encoding:

    0x02 || rlp([chain_id, nonce, max_priority_fee_per_gas, max_fee_per_gas, gas, to, value, data,
                 access_list, y_parity, r, s])

signed by the same key object over ``keccak(0x02 || rlp(the first nine))``. The one check of
eth-account that parsing does not make, an EIP-55 ``to``, is kept. A unit test holds the bytes
equal to ``Account.sign_transaction``'s over random transactions.
"""

from __future__ import annotations

import rlp
from eth_keys import keys
from eth_utils import is_checksum_address, keccak

from core.sign_requests import UnsignedTx

TRANSACTION_TYPE = b"\x02"


def sign(key: keys.PrivateKey, unsigned: UnsignedTx) -> tuple[str, str]:
    """``(raw_tx, tx_hash)``, 0x-hex, of ``unsigned`` signed with ``key``."""
    if not is_checksum_address(unsigned.to):
        # eth-account refuses such a dict too: a destination with a wrong checksum is a typo, not a payment.
        raise ValueError(f"{unsigned.to} is not an EIP-55 address")
    fields = [unsigned.chain_id, unsigned.nonce, unsigned.max_priority_fee_per_gas, unsigned.max_fee_per_gas,
              unsigned.gas, bytes.fromhex(unsigned.to[2:]), unsigned.value, bytes.fromhex(unsigned.data[2:]), []]
    signature = key.sign_msg_hash(keccak(TRANSACTION_TYPE + rlp.encode(fields)))
    raw = TRANSACTION_TYPE + rlp.encode([*fields, signature.v, signature.r, signature.s])
    return "0x" + raw.hex(), "0x" + keccak(raw).hex()
