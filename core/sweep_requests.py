"""The message contract between the treasury worker and the isolated signer for sweeps and gas top-ups.

Both sides import this module (``core`` is the one package the signer may import), as they do
``core.sign_requests`` for withdrawals, whose transaction format, digests and reply signatures
these messages reuse.

A sweep moves what a deposit address holds to the chain's hot wallet; a gas top-up pays a deposit
address, from the hot wallet, the native coin its token sweep will burn as gas. Messages:

- treasury → signer, queue ``signer``, actor ``signer.sign_sweep``, args
  ``(request_id, kind, index, unsigned_tx, authorization)``:

  * ``kind`` is ``"sweep"`` (from the deposit address to the hot wallet) or ``"topup"`` (from the hot
    wallet to the deposit address);
  * ``index`` is the deposit address's derivation index: the signer derives
    ``m/44'/60'/{account}'/0/{index}`` itself and checks the transaction's ``from`` (a sweep) or its
    destination (a top-up) is that very address — the platform's word for it is never taken;
  * ``unsigned_tx`` is the canonical text of a ``core.sign_requests.UnsignedTx``;
  * ``authorization`` is base64url of the custody request key's Ed25519 signature over
    ``sweep_authorization_message(...)``: a domain of its own, so a withdrawal's authorization is
    never a sweep's, nor the reverse, and the kind and the index are covered.

- signer → treasury, queue ``treasury``: ``treasury.sweep_signed(request_id, request_digest, raw_tx,
  tx_hash, signature)`` or ``treasury.sweep_refused(request_id, request_digest, reason, message,
  signature)``, ``signature`` by the signer key over ``core.sign_requests.reply_message`` with the
  reply kinds below (not a withdrawal's: a sweep's reply cannot be replayed onto the custody queue).

The signer's rules (``signer.sweeps``): the per-asset value limits do not apply (the money stays in
custody), the fee caps and the rolling fee budget do; the journal binds a request id to one
``(chain, from, nonce)`` and that nonce to one request, as for withdrawals; a second transaction
under the same id is only a fee bump of the same payment. A top-up pays the native coin only, at
most ``gas_limit × max_fee_per_gas`` of the top-up's own fees — the gas of one token transfer at the
quote the treasury used (``gas_limit``: the signer's ``withdrawal_gas_limit_token``) — and never
above the chain's per-transaction fee cap.
"""

from __future__ import annotations

from typing import Any

from core.sign_requests import MalformedSignRequest

SIGN_SWEEP_ACTOR = "signer.sign_sweep"
TREASURY_QUEUE = "treasury"
SWEEP_SIGNED_ACTOR = "treasury.sweep_signed"
SWEEP_REFUSED_ACTOR = "treasury.sweep_refused"

SWEEP_AUTHORIZATION_DOMAIN = b"virtuoz/sweep-sign-request/v1"
# Bound into the signer key's signature of a reply (core.sign_requests.reply_message).
SWEEP_SIGNED_REPLY, SWEEP_REFUSED_REPLY = "sweep_signed", "sweep_refused"

SWEEP, TOPUP = "sweep", "topup"
KINDS = (SWEEP, TOPUP)
MAX_INDEX = 2**31 - 1  # non-hardened: the allocator derives deposit addresses from the account xpub

# Refusals of sweeps and top-ups besides those of ``core.sign_requests.REFUSAL_REASONS``.
SWEEP_REFUSAL_REASONS = (
    "wrong_destination",  # a sweep not to the hot wallet, a top-up not to the derived deposit address
    "topup_above_gas",  # a top-up above the gas of one token transfer at its fees, or above the fee cap
)


def check_kind(kind: Any) -> str:
    if kind not in KINDS:
        raise MalformedSignRequest(f"kind is not one of {', '.join(KINDS)}")
    return kind


def check_index(index: Any) -> int:
    if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index <= MAX_INDEX:
        raise MalformedSignRequest(f"index is not a deposit address index (0..{MAX_INDEX})")
    return index


def sweep_authorization_message(request_id: str, kind: str, index: int, unsigned_tx: str) -> bytes:
    """What the custody request key signs: the domain, the request, its kind and index, the exact transaction."""
    return b"\n".join((SWEEP_AUTHORIZATION_DOMAIN, request_id.encode(), kind.encode(), str(index).encode(),
                       unsigned_tx.encode()))
