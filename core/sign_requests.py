"""The message contract between the custody worker and the isolated signer (DESIGN.md, "Keys and the signer").

Both sides import this module (``core`` is the one package the signer may import), so the bytes
the custody worker authorizes are, by construction, the bytes the signer verifies.

Messages (Dramatiq, JSON; they carry ids, transactions and signatures — never key material):

- custody → signer, queue ``signer``, actor ``signer.sign_withdrawal``, args
  ``(withdrawal_id, unsigned_tx, authorization)``:

  * ``unsigned_tx`` is the canonical JSON text of an ``UnsignedTx`` (an EIP-1559 transaction
    plus its ``from``): sorted keys, no spaces, integers as JSON numbers;
  * ``authorization`` is base64url of an Ed25519 signature by the custody request key over
    ``authorization_message(withdrawal_id, unsigned_tx)``. The signer holds only the public half.

- signer → custody, queue ``custody``:

  * ``custody.withdrawal_signed`` ``(withdrawal_id, request_digest, raw_tx, tx_hash, signature)``:
    ``raw_tx`` is the signed transaction, 0x-hex; the custody worker checks it is the transaction
    it asked for, signed by its hot wallet, before it broadcasts it;
  * ``custody.withdrawal_refused`` ``(withdrawal_id, request_digest, reason, message, signature)``:
    a stable ``reason`` code (``REFUSAL_REASONS``) and a human sentence.

  ``request_digest`` (``request_digest(unsigned_tx)``) names the attempt being answered: a
  withdrawal may have several attempts at one nonce (fee bumps). ``signature`` is base64url of an
  Ed25519 signature by the *signer key* over ``reply_message(kind, withdrawal_id, request_digest,
  fields)``: anyone can write to the custody queue, so the custody worker believes a reply only
  when it verifies with the public half from its own configuration (``signer_public_key_file``).
  The signer key is derived from the seed (``signer.derivation.signer_key``), so it lives sealed
  in the keystore; ``virtuoz signer init`` exports its public half, and signs the xpub file with
  it (``xpub_file_message``).

A repeated request gets the same answer: the same raw transaction, or a refusal.

Fillers and cancels. Besides a withdrawal's payment and its fee bumps, the signer signs at each
``(chain, from, nonce)`` one *self-transfer*: 0 value from the hot wallet to itself, no data
(``UnsignedTx.is_self_transfer``), paying per gas at least 10 % more (max fee and tip) than every
transaction already signed at that nonce. It travels as any sign request does — the same actor,
an Ed25519 authorization by the custody request key over the same message — and what the id names
decides what it is:

- a *filler* takes a nonce nothing was signed at (a withdrawal the signer refused gave it back while
  later nonces were already signed); its id is a fresh UUID naming the filler, never a withdrawal,
  and it is never used for anything else;
- a *cancel* replaces the payment signed at a withdrawal's nonce; its id is that withdrawal's id
  (a self-transfer at a nonce signed for another id is ``nonce_taken``).

Nothing else is ever signed at a nonce that has a self-transfer: no fee bump, no second one.

Hot → cold transfers (``custody.treasury.hot_cold``). The hot wallet's surplus goes to the chain's
cold wallet through its own actor, ``signer.sign_cold_transfer(transfer_id, unsigned_tx,
authorization)``: the authorization is the custody request key's over
``cold_transfer_authorization_message`` (a domain of its own, so a withdrawal's authorization can
never be passed off as one, nor the reverse). The signer signs it only from the chain's hot wallet
to the cold wallet of *its own* configuration (``signer_cold_wallets``), else ``not_cold_wallet``;
the money stays in custody, so the per-asset value limits do not apply, while the fee caps, the
journal and the hot wallet's nonce rules do (the nonce comes from the same sequence as
withdrawals'). The answer is the usual ``custody.withdrawal_signed`` / ``custody.withdrawal_refused``,
naming the transfer's id.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)

from core import json_input
from core.settings import SettingsError
from core.signing import b64url_decode, b64url_encode, load_public_key

SIGNER_QUEUE = "signer"
CUSTODY_QUEUE = "custody"
SIGN_ACTOR = "signer.sign_withdrawal"
SIGNED_ACTOR = "custody.withdrawal_signed"
REFUSED_ACTOR = "custody.withdrawal_refused"
SIGN_COLD_TRANSFER_ACTOR = "signer.sign_cold_transfer"

AUTHORIZATION_DOMAIN = b"virtuoz/withdrawal-sign-request/v1"
COLD_TRANSFER_AUTHORIZATION_DOMAIN = b"virtuoz/cold-transfer-sign-request/v1"
# The signer key signs two kinds of thing; a prefix each, so one can never be passed off as the other
# (nor as a custody authorization).
REPLY_DOMAIN = b"virtuoz/signer-reply/v1"
XPUB_FILE_DOMAIN = b"virtuoz/signer-xpub-file/v1"
SIGNED_REPLY, REFUSED_REPLY = "signed", "refused"  # the reply kinds, bound into their signatures

# Stable refusal codes: audited on the withdrawal and counted in metrics.
REFUSAL_REASONS = (
    "malformed_request",  # not a well-formed sign request
    "invalid_authorization",  # the Ed25519 authorization does not verify for this request
    "unknown_chain",  # the chain id is not one the signer is configured for
    "wrong_sender",  # `from` is not this signer's hot wallet on that chain
    "unknown_asset",  # neither the native coin nor a configured token transfer
    "sanctioned_address",  # the destination is on the signer's sanctions list
    "single_limit_exceeded",  # above the per-asset single-transaction limit
    "daily_limit_exceeded",  # the rolling 24 h per-asset limit would be exceeded
    "nonce_taken",  # (chain, from, nonce) already signed for another withdrawal
    "withdrawal_signed_elsewhere",  # this withdrawal is already signed at another nonce or chain
    "replacement_not_allowed",  # a second transaction at the same nonce that is not a pure fee bump
    # Fees (``core.settings.FeeCaps``, per chain): what a transaction may spend on gas, whatever it pays.
    "no_fee_caps",  # the chain has no fee caps configured: the signer spends nothing on it
    "gas_limit_above_cap",  # the gas limit is above the chain's cap
    "max_fee_above_cap",  # the max fee per gas is above the chain's cap
    "priority_fee_above_cap",  # the max priority fee per gas is above the chain's cap
    "total_fee_above_cap",  # gas limit × max fee per gas is above the chain's per-transaction cap
    "fee_budget_exceeded",  # the worst-case fees signed on the chain in a rolling 24 h would pass its budget
    "too_many_replacements",  # the nonce already has its first transaction and every replacement allowed
    # Hot → cold: not from the chain's hot wallet to the cold wallet of the signer's own configuration.
    "not_cold_wallet",
)

_ADDRESS = re.compile(r"0x[0-9a-fA-F]{40}")
_DATA = re.compile(r"0x(?:[0-9a-f]{2})*")
_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
UINT256_MAX = 2**256 - 1
ERC20_TRANSFER_SELECTOR = "0xa9059cbb"  # transfer(address,uint256)


class MalformedSignRequest(ValueError):
    """The request is not exactly one this contract describes."""


@dataclass(frozen=True)
class UnsignedTx:
    """An EIP-1559 (type 2) transaction, unsigned, with the hot wallet that must sign it."""

    chain_id: int
    sender: str  # "from": EIP-55
    nonce: int
    to: str  # EIP-55: the destination (native) or the token contract (ERC-20)
    value: int  # wei
    data: str  # 0x-hex, lowercase; "0x" for a native transfer
    gas: int
    max_fee_per_gas: int
    max_priority_fee_per_gas: int

    def canonical(self) -> str:
        fields = asdict(self)
        fields["from"] = fields.pop("sender")
        fields["type"] = 2
        return json.dumps(fields, sort_keys=True, separators=(",", ":"))

    def for_signing(self) -> dict[str, Any]:
        """The dict eth-account's ``sign_transaction`` takes (no ``from``: the key decides it)."""
        return {
            "type": 2, "chainId": self.chain_id, "nonce": self.nonce, "to": self.to, "value": self.value,
            "data": self.data, "gas": self.gas, "maxFeePerGas": self.max_fee_per_gas,
            "maxPriorityFeePerGas": self.max_priority_fee_per_gas, "accessList": [],
        }

    def is_self_transfer(self) -> bool:
        """A filler or a cancel: nothing moves but the fee (see the module's docstring)."""
        return self.to == self.sender and self.value == 0 and self.data == "0x"

    def same_payment(self, other: UnsignedTx) -> bool:
        """Everything but the fees is equal: ``other`` could replace this one as a fee bump."""
        return (self.chain_id, self.sender, self.nonce, self.to, self.value, self.data, self.gas) == (
            other.chain_id, other.sender, other.nonce, other.to, other.value, other.data, other.gas)

    @classmethod
    def parse(cls, text: Any) -> UnsignedTx:
        """Strictly: exactly the canonical text of a well-formed transaction, nothing else."""
        if not isinstance(text, str) or len(text) > 4096:
            raise MalformedSignRequest("unsigned_tx is not a string of reasonable length")
        try:
            fields = json_input.loads(text)  # bounded nesting: the text comes from Redis
        except ValueError:
            raise MalformedSignRequest("unsigned_tx is not JSON") from None
        expected = {"chain_id", "from", "nonce", "to", "value", "data", "gas", "max_fee_per_gas",
                    "max_priority_fee_per_gas", "type"}
        if not isinstance(fields, dict) or set(fields) != expected or fields["type"] != 2:
            raise MalformedSignRequest("unsigned_tx does not have exactly the fields of a type-2 transaction")
        for name in expected - {"from", "to", "data"}:
            value = fields[name]
            if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= UINT256_MAX:
                raise MalformedSignRequest(f"unsigned_tx.{name} is not a uint256")
        for name in ("from", "to"):
            if not isinstance(fields[name], str) or not _ADDRESS.fullmatch(fields[name]):
                raise MalformedSignRequest(f"unsigned_tx.{name} is not an address")
        if not isinstance(fields["data"], str) or not _DATA.fullmatch(fields["data"]):
            raise MalformedSignRequest("unsigned_tx.data is not lowercase 0x-hex")
        if fields["max_priority_fee_per_gas"] > fields["max_fee_per_gas"]:
            raise MalformedSignRequest("the priority fee is above the max fee")
        parsed = cls(fields["chain_id"], fields["from"], fields["nonce"], fields["to"], fields["value"],
                     fields["data"], fields["gas"], fields["max_fee_per_gas"], fields["max_priority_fee_per_gas"])
        # One transaction, one text: what was authorized is exactly what is parsed.
        if parsed.canonical() != text:
            raise MalformedSignRequest("unsigned_tx is not in canonical form")
        return parsed


def check_withdrawal_id(withdrawal_id: Any) -> str:
    if not isinstance(withdrawal_id, str) or not _UUID.fullmatch(withdrawal_id):
        raise MalformedSignRequest("withdrawal_id is not a lowercase UUID")
    return withdrawal_id


def authorization_message(withdrawal_id: str, unsigned_tx: str) -> bytes:
    """What the custody request key signs: the domain, the withdrawal and the exact transaction text."""
    return AUTHORIZATION_DOMAIN + b"\n" + withdrawal_id.encode() + b"\n" + unsigned_tx.encode()


def cold_transfer_authorization_message(transfer_id: str, unsigned_tx: str) -> bytes:
    """What the custody request key signs for a hot → cold transfer: its own domain, the transfer, the transaction."""
    return COLD_TRANSFER_AUTHORIZATION_DOMAIN + b"\n" + transfer_id.encode() + b"\n" + unsigned_tx.encode()


def request_digest(unsigned_tx: str) -> str:
    return hashlib.sha256(unsigned_tx.encode("utf-8", "surrogatepass")).hexdigest()


def erc20_transfer_data(to: str, amount: int) -> str:
    """ABI encoding of ``transfer(to, amount)``."""
    return ERC20_TRANSFER_SELECTOR + to[2:].lower().rjust(64, "0") + format(amount, "064x")


def decode_erc20_transfer(data: str) -> tuple[str, int] | None:
    """``(to, amount)`` of a ``transfer(address,uint256)`` call, or None for anything else."""
    if len(data) != 2 + 8 + 128 or not data.startswith(ERC20_TRANSFER_SELECTOR):
        return None
    address_word, amount_word = data[10:74], data[74:]
    if address_word[:24] != "0" * 24:
        return None
    return "0x" + address_word[24:], int(amount_word, 16)


# --- what the signer key signs ------------------------------------------------------------------

def reply_message(kind: str, withdrawal_id: str, request_digest: str, fields: Sequence[str]) -> bytes:
    """What the signer key signs for a reply: the domain, then a JSON array of the reply kind, the
    withdrawal, the request answered and the reply's own fields (``(raw_tx, tx_hash)`` or
    ``(reason, message)``). A JSON array leaves no doubt where one field ends; ASCII-only, so any
    string (a forged one included) has exactly one encoding."""
    body = json.dumps([kind, withdrawal_id, request_digest, *fields], separators=(",", ":"), ensure_ascii=True)
    return REPLY_DOMAIN + b"\n" + body.encode("ascii")


def sign_reply(key: Ed25519PrivateKey, kind: str, withdrawal_id: str, request_digest: str,
               fields: Sequence[str]) -> str:
    return b64url_encode(key.sign(reply_message(kind, withdrawal_id, request_digest, fields)))


def reply_verifies(public_key: Ed25519PublicKey, kind: str, withdrawal_id: object, request_digest: object,
                   fields: Sequence[object], signature: object) -> bool:
    """True only if ``signature`` is the signer key's over exactly this reply; anything else in the
    message (wrong types, no signature at all) is False, never an exception."""
    values = (withdrawal_id, request_digest, *fields, signature)
    if not all(isinstance(value, str) for value in values):
        return False
    try:
        public_key.verify(b64url_decode(signature),  # type: ignore[arg-type]
                          reply_message(kind, withdrawal_id, request_digest, fields))  # type: ignore[arg-type]
    except (ValueError, InvalidSignature):
        return False
    return True


def xpub_file_message(document: dict[str, Any]) -> bytes:
    """What the signer key signs for the xpub file: the domain, then the canonical JSON of the whole
    document but its ``signature`` (the deposit xpubs and the hot wallets of every chain alike)."""
    unsigned = {key: value for key, value in document.items() if key != "signature"}
    return XPUB_FILE_DOMAIN + b"\n" + json.dumps(unsigned, sort_keys=True, separators=(",", ":"),
                                                 ensure_ascii=True).encode("ascii")


def load_signer_public_key(path: Path) -> Ed25519PublicKey:
    """The signer key's public half from the platform's own configuration (base64url of 32 bytes).

    Never from a message, never from a file the signer hands over at run time: the file is copied
    once, at `virtuoz signer init`, into the configuration of the processes that verify.
    """
    try:
        text = path.read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError):
        raise SettingsError(f"no signer public key at {path}: copy the file `virtuoz signer init` wrote there "
                            "(VIRTUOZ_SIGNER_PUBLIC_KEY_FILE)") from None
    try:
        return load_public_key(text)
    except ValueError:
        raise SettingsError(f"{path} is not a signer public key (base64url of 32 Ed25519 bytes)") from None
