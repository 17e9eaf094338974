"""Sweeps and gas top-ups, signed beside withdrawals by the same keys, journal and fee caps.

A request (``core.sweep_requests``) names the deposit address by its derivation index; the signer
derives that address itself and checks, on its own:

- the custody request key's authorization, over the request id, the kind, the index and the exact
  transaction;
- a sweep (``kind = "sweep"``) goes from that deposit address to this signer's hot wallet of the
  chain, a top-up (``"topup"``) from the hot wallet to that deposit address, of the native coin, at
  most the gas of one token transfer (``Policy.check_sweep``, ``Policy.check_topup``);
- the journal's rules, as for a withdrawal: a request id is signed at one ``(chain, from, nonce)``,
  a nonce belongs to one request id, a second transaction under an id is only a fee bump of the
  same payment (higher fees on both fields); a repeat gets the same raw transaction, an authorized
  request once refused stays refused;
- the chain's fee caps, replacements per nonce and rolling fee budget.

Value limits do not apply (the money stays in custody), so nothing signed here counts toward
them (``first=False`` in the journal); every fee counts toward the fee budget.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import dramatiq
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)

from core.sign_requests import (
    SIGNER_QUEUE,
    MalformedSignRequest,
    UnsignedTx,
    check_withdrawal_id,
    request_digest,
)
from core.signing import b64url_decode
from core.sweep_requests import (
    SIGN_SWEEP_ACTOR,
    SWEEP,
    SWEEP_REFUSED_ACTOR,
    SWEEP_REFUSED_REPLY,
    SWEEP_SIGNED_ACTOR,
    SWEEP_SIGNED_REPLY,
    TREASURY_QUEUE,
    check_index,
    check_kind,
    sweep_authorization_message,
)
from signer.answers import Replies, answer, reply_message
from signer.journal import Signature
from signer.policy import Refusal
from signer.service import UNSAFE_REFUSALS, Refused, Signed, Signer


class SweepSigner:
    """Signs sweeps and top-ups with ``signer``'s keys, journal and policy."""

    def __init__(self, signer: Signer, request_public_key: Ed25519PublicKey, *, token_gas_limit: int) -> None:
        self.signer = signer
        self.journal = signer.journal
        self.policy = signer.policy
        self._request_key = request_public_key
        # The most gas one token transfer may use, as the treasury's setting says (both read
        # withdrawal_gas_limit_token): a top-up pays at most that much gas at its own fees.
        self.token_gas_limit = token_gas_limit

    def handle(self, request_id: object, kind: object, index: object, unsigned_text: object,
               authorization: object) -> Signed | Refused:
        """Sign or refuse one request; never raises for a bad request (it is refused with a reason).
        Returns once the journal holds the outcome durably (``Journal.sync``)."""
        try:
            return self._handle(request_id, kind, index, unsigned_text, authorization)
        finally:
            self.journal.sync()

    def _handle(self, request_id: object, kind: object, index: object, unsigned_text: object,
                authorization: object) -> Signed | Refused:
        digest = request_digest(unsigned_text) if isinstance(unsigned_text, str) else ""
        label = request_id if isinstance(request_id, str) else repr(request_id)
        try:
            request = check_withdrawal_id(request_id)
            kind = check_kind(kind)
            index = check_index(index)
            unsigned = UnsignedTx.parse(unsigned_text)
            self._verify(request, kind, index, unsigned_text, authorization)  # type: ignore[arg-type]
        except MalformedSignRequest as malformed:
            return self._refuse(label[:80], digest, Refusal("malformed_request", str(malformed)))
        except Refusal as refusal:
            return self._refuse(request, digest, refusal)
        with self.journal.held():
            try:
                return self._sign(request, kind, index, unsigned, unsigned_text, digest)  # type: ignore[arg-type]
            except _Repeated as repeated:
                return Refused(request, digest, repeated.reason, repeated.message)
            except Refusal as refusal:
                # Sticky once authorized, as for withdrawals (signer.journal): the treasury gives the
                # nonce back on a refusal, so a redelivered copy must never be signed afterwards.
                return self._refuse(request, digest, refusal, sticky=True)

    def _verify(self, request_id: str, kind: str, index: int, unsigned_text: str, authorization: object) -> None:
        try:
            if not isinstance(authorization, str):
                raise ValueError
            self._request_key.verify(b64url_decode(authorization),
                                     sweep_authorization_message(request_id, kind, index, unsigned_text))
        except (ValueError, InvalidSignature):
            raise Refusal("invalid_authorization",
                          "the authorization is not the custody request key's signature of this request") from None

    def _sign(self, request_id: str, kind: str, index: int, unsigned: UnsignedTx, unsigned_text: str,
              digest: str) -> Signed:
        journal = self.journal
        known = journal.by_digest(digest)
        if known is not None and known.withdrawal_id == request_id:
            return Signed(request_id, digest, known.raw_tx, known.tx_hash, repeated=True)
        if (sticky := journal.sticky_refusal(request_id, digest)) is not None:
            raise _Repeated(*sticky)
        earlier = journal.for_withdrawal(request_id)
        try:
            chain = self.policy.chain(unsigned)
            deposit = self.signer.deposit_wallet(chain.chain_id, index)
            hot_wallet = self.signer.hot_wallet(chain.chain_id)
            payment = self.policy.payment(unsigned)
            if kind == SWEEP:
                self.policy.check_sweep(unsigned, payment, deposit=deposit, hot_wallet=hot_wallet)
            else:
                self.policy.check_topup(unsigned, payment, deposit=deposit, hot_wallet=hot_wallet,
                                        gas_limit=self.token_gas_limit)
            at_nonce = journal.at_nonce(unsigned.chain_id, unsigned.sender, unsigned.nonce)
            if earlier:
                _check_fee_bump(request_id, unsigned, earlier, at_nonce)
            else:
                holder = known.withdrawal_id if known is not None else (
                    at_nonce[0].withdrawal_id if at_nonce else None)
                if holder is not None:
                    raise Refusal("nonce_taken", f"nonce {unsigned.nonce} of {unsigned.sender} is signed for "
                                                 f"request {holder}")
            self.policy.check_fees(unsigned, len(at_nonce), journal.fees_since(unsigned.chain_id))
        except Refusal as refusal:
            if earlier and refusal.reason not in UNSAFE_REFUSALS:
                # Something is signed under this id already: never let the treasury read "nothing signed".
                raise Refusal("replacement_not_allowed", f"{refusal.reason}: {refusal.message}") from None
            raise
        raw_tx, tx_hash = self.signer.sign_bytes(unsigned, deposit_index=index if kind == SWEEP else None)
        journal.write(Signature(request_id, digest, unsigned.chain_id, unsigned.sender, unsigned.nonce,
                                payment.asset, payment.amount, unsigned.max_fee_per_gas,
                                unsigned.max_priority_fee_per_gas, unsigned_text, raw_tx, tx_hash),
                      payment.destination, first=False)
        return Signed(request_id, digest, raw_tx, tx_hash, repeated=False)

    def _refuse(self, request_id: str, digest: str, refusal: Refusal, *, sticky: bool = False) -> Refused:
        with self.journal.held():
            self.journal.write_refusal(request_id, digest, refusal.reason, refusal.message, sticky=sticky)
        return Refused(request_id, digest, refusal.reason, refusal.message)


def _check_fee_bump(request_id: str, unsigned: UnsignedTx, earlier: list[Signature], at_nonce: list[Signature]) -> None:
    """A second transaction under one request id: the same payment at the same nonce, both fees higher."""
    first = UnsignedTx.parse(earlier[0].unsigned_tx)
    if (first.chain_id, first.sender, first.nonce) != (unsigned.chain_id, unsigned.sender, unsigned.nonce):
        raise Refusal("withdrawal_signed_elsewhere",
                      f"request {request_id} is already signed at nonce {first.nonce} of {first.sender}")
    if any(item.withdrawal_id != request_id for item in at_nonce):
        raise Refusal("nonce_taken", f"nonce {unsigned.nonce} of {unsigned.sender} is signed for another request")
    if not first.same_payment(unsigned) or unsigned.max_fee_per_gas <= max(item.max_fee_per_gas for item in earlier) \
            or unsigned.max_priority_fee_per_gas <= max(item.max_priority_fee_per_gas for item in earlier):
        raise Refusal("replacement_not_allowed",
                      "a second transaction for a request must be the same payment with higher fees")


class _Repeated(Refusal):
    """A refusal already journaled for this very request: answered again, not recorded again."""


# --- the daemon's side ---------------------------------------------------------------------------

SWEEP_REPLIES = Replies(TREASURY_QUEUE, signed=(SWEEP_SIGNED_REPLY, SWEEP_SIGNED_ACTOR),
                        refused=(SWEEP_REFUSED_REPLY, SWEEP_REFUSED_ACTOR))


def reply_for(outcome: Signed | Refused, key: Ed25519PrivateKey) -> dramatiq.Message[Any]:
    """The reply to the treasury worker, signed by the signer key under the sweep reply kinds."""
    return reply_message(outcome, key, SWEEP_REPLIES)


def declare_actor(broker: dramatiq.Broker, sweeps: SweepSigner, key: Ed25519PrivateKey,
                  pause: Callable[[str], None] | None = None) -> None:
    """``signer.sign_sweep`` on the signer queue (``core.sweep_requests``). ``pause``: the test suite's
    window "journaled but not answered" (``signer.daemon``), called with the request id."""

    def sign_sweep(*args: Any, **kwargs: Any) -> None:
        shaped = len(args) == 5 and not kwargs
        request_id, kind, index, unsigned_tx, authorization = args if shaped else (None,) * 5
        outcome = sweeps.handle(request_id, kind, index, unsigned_tx, authorization)
        answer(broker, outcome, reply_for(outcome, key), str(kind), pause)

    dramatiq.actor(sign_sweep, broker=broker, actor_name=SIGN_SWEEP_ACTOR, queue_name=SIGNER_QUEUE)
