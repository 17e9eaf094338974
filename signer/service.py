"""The signer's decision: verify a sign request on its own, then sign it at most once.

Order of checks (cheapest refusals first, the key last): the request's shape; the Ed25519
authorization by the custody request key (only its public half is here); the journal for a
repeat (answered with the same raw transaction); the sender is this signer's hot wallet on that
chain; what the transaction really pays (``policy``); the journal's one-withdrawal-one-nonce
rules (and its one self-transfer per nonce: a filler or a cancel, ``core.sign_requests``); sanctions
and limits; the chain's fee caps, replacements per nonce and 24 h fee budget; then the signature,
journaled (fsync) before it is returned. The checks and the journal write are one step under the
journal's hold, so concurrent requests see each other's signatures; the fsync is shared with the
requests in flight (``signer.journal``, group commit).

Keys (``signer.derivation``): the hot wallet of each chain is ``m/44'/60'/{hot_account}'/0/0`` of
the keystore's seed, derived in memory at start; no key ever leaves this object. The hot wallet of
before the move, ``m/44'/60'/{account}'/1/0``, signs only what cannot hurt: the fee bumps (and the
cancel) of a payment it signed back then, fillers, and transfers to the new hot wallet, which move
money inside custody and so count against no limit.

Hot → cold transfers (``handle_cold_transfer``, ``core.sign_requests``) come with an authorization of
their own kind, and go only from the chain's hot wallet to the cold wallet of this signer's own
configuration; like a move out of the retired wallet they count against no value limit, and like
everything else they go through the journal and the fee caps.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from bip_utils import Bip32Secp256k1
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from eth_account import Account
from eth_keys import keys

from core.settings import ChainSettings
from core.sign_requests import (
    MalformedSignRequest,
    UnsignedTx,
    authorization_message,
    check_withdrawal_id,
    cold_transfer_authorization_message,
    request_digest,
)
from core.signing import b64url_decode
from signer import transactions
from signer.derivation import DEPOSIT_CHANGE, account_path, hot_wallet_path, retired_hot_wallet_path
from signer.journal import Journal, Signature
from signer.policy import Payment, Policy, Refusal

# Refusals that already say "this withdrawal has a signature": never rewritten as a replacement refusal.
UNSAFE_REFUSALS = frozenset({"withdrawal_signed_elsewhere", "replacement_not_allowed", "too_many_replacements"})
# A self-transfer replaces what is signed at its nonce only paying this much more per gas (11/10).
SELF_TRANSFER_RAISE = (11, 10)


@dataclass(frozen=True)
class Signed:
    withdrawal_id: str
    request_digest: str
    raw_tx: str  # 0x-hex
    tx_hash: str
    repeated: bool  # True: the journal already had it; nothing was signed now


@dataclass(frozen=True)
class Refused:
    withdrawal_id: str
    request_digest: str
    reason: str
    message: str


class Signer:
    def __init__(self, seed: bytes, chains: Sequence[ChainSettings], policy: Policy, journal: Journal,
                 request_public_key: Ed25519PublicKey) -> None:
        root = Bip32Secp256k1.FromSeed(seed)
        self._addresses: dict[int, str] = {}
        self._retired: dict[int, str] = {}  # chain id → the hot wallet of before the move
        self._keys: dict[str, keys.PrivateKey] = {}  # sender address → its key (coincurve backend)
        for chain in chains:
            for path, addresses in ((hot_wallet_path(chain.hot_account), self._addresses),
                                    (retired_hot_wallet_path(chain.account), self._retired)):
                private = root.DerivePath(path).PrivateKey().Raw().ToBytes()
                addresses[chain.chain_id] = Account.from_key(private).address
                self._keys[addresses[chain.chain_id]] = keys.PrivateKey(private)
        # Sweeps (signer.sweeps): each deposit key is derived when a sweep names its index, never kept.
        self._deposit_accounts = {chain.chain_id: root.DerivePath(account_path(chain.account)) for chain in chains}
        self.policy = policy
        self.journal = journal
        self._request_key = request_public_key

    def hot_wallet(self, chain_id: int) -> str:
        return self._addresses[chain_id]

    def deposit_wallet(self, chain_id: int, index: int) -> str:
        """The deposit address ``m/44'/60'/{account}'/0/{index}`` of ``chain_id``, derived here (sweeps)."""
        return Account.from_key(self._deposit_key(chain_id, index)).address

    def sign_bytes(self, unsigned: UnsignedTx, *, deposit_index: int | None = None) -> tuple[str, str]:
        """``(raw_tx, tx_hash)`` of ``unsigned`` signed by its sender: a hot wallet of this signer, or the
        deposit address ``deposit_index`` (``signer.sweeps``, which has checked the policy first)."""
        if deposit_index is None:
            key = self._keys[unsigned.sender]
        else:
            private = self._deposit_key(unsigned.chain_id, deposit_index)
            key = keys.PrivateKey(private)
            if key.public_key.to_checksum_address() != unsigned.sender:
                raise Refusal("wrong_sender", f"{unsigned.sender} is not deposit address {deposit_index}")
        return transactions.sign(key, unsigned)

    def _deposit_key(self, chain_id: int, index: int) -> bytes:
        account = self._deposit_accounts[chain_id]
        return account.ChildKey(DEPOSIT_CHANGE).ChildKey(index).PrivateKey().Raw().ToBytes()

    def handle(self, withdrawal_id: object, unsigned_text: object, authorization: object) -> Signed | Refused:
        """Sign or refuse one request; never raises for a bad request (it is refused with a reason).

        Returns only once the journal holds the outcome durably (``Journal.sync``): callers answer at once.
        """
        try:
            return self._handle(withdrawal_id, unsigned_text, authorization)
        finally:
            self.journal.sync()

    def _handle(self, withdrawal_id: object, unsigned_text: object, authorization: object) -> Signed | Refused:
        digest = request_digest(unsigned_text) if isinstance(unsigned_text, str) else ""
        label = withdrawal_id if isinstance(withdrawal_id, str) else repr(withdrawal_id)
        try:
            withdrawal = check_withdrawal_id(withdrawal_id)
            unsigned = UnsignedTx.parse(unsigned_text)
            self._verify(withdrawal, unsigned_text, authorization)  # type: ignore[arg-type]
        except MalformedSignRequest as malformed:
            return self._refuse(label[:80], digest, Refusal("malformed_request", str(malformed)))
        except Refusal as refusal:
            return self._refuse(withdrawal, digest, refusal)
        with self.journal.held():
            try:
                return self._sign(withdrawal, unsigned, unsigned_text, digest)  # type: ignore[arg-type]
            except Refusal as refusal:
                # Authorized requests get sticky refusals (see signer.journal); forged ones do not,
                # so a forgery cannot make the genuine request be refused.
                return self._refuse(withdrawal, digest, refusal, sticky=True)

    def handle_cold_transfer(self, transfer_id: object, unsigned_text: object, authorization: object
                             ) -> Signed | Refused:
        """Sign or refuse a hot → cold transfer: ``handle``'s checks, with the cold kind's authorization, and
        the cold wallet of this signer's configuration in place of the value limits."""
        try:
            return self._handle_cold_transfer(transfer_id, unsigned_text, authorization)
        finally:
            self.journal.sync()

    def _handle_cold_transfer(self, transfer_id: object, unsigned_text: object, authorization: object
                              ) -> Signed | Refused:
        digest = request_digest(unsigned_text) if isinstance(unsigned_text, str) else ""
        label = transfer_id if isinstance(transfer_id, str) else repr(transfer_id)
        try:
            transfer = check_withdrawal_id(transfer_id)
            unsigned = UnsignedTx.parse(unsigned_text)
            self._verify(transfer, unsigned_text, authorization,  # type: ignore[arg-type]
                         message=cold_transfer_authorization_message)
        except MalformedSignRequest as malformed:
            return self._refuse(label[:80], digest, Refusal("malformed_request", str(malformed)))
        except Refusal as refusal:
            return self._refuse(transfer, digest, refusal)
        with self.journal.held():
            try:
                return self._sign(transfer, unsigned, unsigned_text, digest, cold=True)  # type: ignore[arg-type]
            except Refusal as refusal:
                return self._refuse(transfer, digest, refusal, sticky=True)

    def _verify(self, withdrawal_id: str, unsigned_text: str, authorization: object,
                message: Callable[[str, str], bytes] = authorization_message) -> None:
        try:
            if not isinstance(authorization, str):
                raise ValueError
            signature = b64url_decode(authorization)
            self._request_key.verify(signature, message(withdrawal_id, unsigned_text))
        except (ValueError, InvalidSignature):
            raise Refusal("invalid_authorization",
                          "the authorization is not the custody request key's signature of this request") from None

    def _sign(self, withdrawal_id: str, unsigned: UnsignedTx, unsigned_text: str, digest: str, *,
              cold: bool = False) -> Signed:
        journal = self.journal
        known = journal.by_digest(digest)
        if known is not None and known.withdrawal_id == withdrawal_id:
            return Signed(withdrawal_id, digest, known.raw_tx, known.tx_hash, repeated=True)
        if (sticky := journal.sticky_refusal(withdrawal_id, digest)) is not None:
            raise _Repeated(*sticky)
        earlier = journal.for_withdrawal(withdrawal_id)
        try:
            payment = self._payment(unsigned, earlier)
            if cold:
                self._check_cold_transfer(unsigned, payment)
            moving_out = self._moves_out_of_retired(unsigned, payment)
            at_nonce = journal.at_nonce(unsigned.chain_id, unsigned.sender, unsigned.nonce)
            if unsigned.is_self_transfer():
                self._check_self_transfer(withdrawal_id, unsigned, earlier, at_nonce)
            elif earlier:
                self._check_replacement(withdrawal_id, unsigned, payment, earlier, at_nonce)
            else:
                holder = known.withdrawal_id if known is not None else (
                    at_nonce[0].withdrawal_id if at_nonce else None)
                if holder is not None:
                    raise Refusal("nonce_taken", f"nonce {unsigned.nonce} of {unsigned.sender} is signed for "
                                                 f"withdrawal {holder}")
                if not moving_out and not cold:
                    self.policy.check(payment, journal.signed_since(payment.asset))
            self.policy.check_fees(unsigned, len(at_nonce), journal.fees_since(unsigned.chain_id))
        except Refusal as refusal:
            if earlier and refusal.reason not in UNSAFE_REFUSALS:
                # This withdrawal has a signed transaction already: say so, so that the custody
                # worker never reads the refusal as "nothing was signed" and voids the hold.
                raise Refusal("replacement_not_allowed", f"{refusal.reason}: {refusal.message}") from None
            raise

        # Keys are objects made once at start (``Account.sign_transaction`` would rebuild the account
        # from the raw key on every call); ``signer.transactions`` encodes what eth-account would.
        raw_tx, tx_hash = transactions.sign(self._keys[unsigned.sender], unsigned)
        journal.write(Signature(withdrawal_id, digest, unsigned.chain_id, unsigned.sender, unsigned.nonce,
                                payment.asset, payment.amount, unsigned.max_fee_per_gas,
                                unsigned.max_priority_fee_per_gas, unsigned_text, raw_tx, tx_hash),
                      payment.destination, first=not earlier and not moving_out and not cold)
        return Signed(withdrawal_id, digest, raw_tx, tx_hash, repeated=False)

    def _payment(self, unsigned: UnsignedTx, earlier: list[Signature]) -> Payment:
        chain = self.policy.chain(unsigned)
        if self._addresses.get(unsigned.chain_id) == unsigned.sender:
            return self.policy.payment(unsigned)
        if self._retired.get(unsigned.chain_id) != unsigned.sender:
            raise Refusal("wrong_sender", f"{unsigned.sender} is not this signer's hot wallet on {chain.name}")
        payment = self.policy.payment(unsigned)
        if not (earlier or unsigned.is_self_transfer() or self._moves_out_of_retired(unsigned, payment)):
            raise Refusal("wrong_sender", f"{unsigned.sender} is the retired hot wallet of {chain.name}: it pays only "
                                          f"the new one, {self._addresses[unsigned.chain_id]}")
        return payment

    def _check_cold_transfer(self, unsigned: UnsignedTx, payment: Payment) -> None:
        """From the chain's hot wallet (never the retired one) to the cold wallet of this signer's configuration."""
        if self._addresses.get(unsigned.chain_id) != unsigned.sender:
            raise Refusal("wrong_sender", f"{unsigned.sender} is not the hot wallet of {payment.chain}: only it pays "
                                          "the cold wallet")
        self.policy.check_cold_transfer(payment)

    def _moves_out_of_retired(self, unsigned: UnsignedTx, payment: Payment) -> bool:
        """The retired hot wallet paying the new one: money that stays in custody."""
        return (self._retired.get(unsigned.chain_id) == unsigned.sender
                and payment.destination == self._addresses.get(unsigned.chain_id))

    def _check_replacement(self, withdrawal_id: str, unsigned: UnsignedTx, payment: Payment,
                           earlier: list[Signature], at_nonce: list[Signature]) -> None:
        first = _same_nonce(withdrawal_id, unsigned, earlier)
        if any(UnsignedTx.parse(item.unsigned_tx).is_self_transfer() for item in at_nonce):
            raise Refusal("replacement_not_allowed",
                          f"nonce {unsigned.nonce} has a filler or a cancel: nothing else is signed at it")
        highest_fee = max(item.max_fee_per_gas for item in earlier)
        highest_tip = max(item.max_priority_fee_per_gas for item in earlier)
        if not first.same_payment(unsigned) or unsigned.max_fee_per_gas <= highest_fee \
                or unsigned.max_priority_fee_per_gas <= highest_tip:
            raise Refusal("replacement_not_allowed",
                          "a second transaction for a withdrawal must be the same payment with higher fees")
        # A fee bump moves nothing new (the limits counted the payment once), but the list may
        # have grown since the first signature.
        if payment.destination in self.policy.sanctions:
            raise Refusal("sanctioned_address", f"{payment.destination} is on the signer's sanctions list")

    def _check_self_transfer(self, withdrawal_id: str, unsigned: UnsignedTx, earlier: list[Signature],
                             at_nonce: list[Signature]) -> None:
        """A filler (a fresh id at a nonce nothing was signed at) or the cancel of the withdrawal signed at
        this nonce (its id), once per nonce, paying 10 % more per gas than everything signed there."""
        if earlier:
            _same_nonce(withdrawal_id, unsigned, earlier)
        holders = {item.withdrawal_id for item in at_nonce} - {withdrawal_id}
        if holders:
            raise Refusal("nonce_taken", f"nonce {unsigned.nonce} of {unsigned.sender} is signed for withdrawal "
                                         f"{min(holders)}: only its own cancel may replace it")
        if any(UnsignedTx.parse(item.unsigned_tx).is_self_transfer() for item in at_nonce):
            raise Refusal("replacement_not_allowed", f"nonce {unsigned.nonce} has its one self-transfer already")
        more, than = SELF_TRANSFER_RAISE
        if any(unsigned.max_fee_per_gas * than < item.max_fee_per_gas * more
               or unsigned.max_priority_fee_per_gas * than < item.max_priority_fee_per_gas * more
               for item in at_nonce):
            raise Refusal("replacement_not_allowed", "a cancel pays at least 10 % more per gas (max fee and tip) "
                                                     f"than every transaction signed at nonce {unsigned.nonce}")

    def _refuse(self, withdrawal_id: str, digest: str, refusal: Refusal, *, sticky: bool = False) -> Refused:
        if not isinstance(refusal, _Repeated):
            with self.journal.held():
                self.journal.write_refusal(withdrawal_id, digest, refusal.reason, refusal.message, sticky=sticky)
        return Refused(withdrawal_id, digest, refusal.reason, refusal.message)


def _same_nonce(withdrawal_id: str, unsigned: UnsignedTx, earlier: list[Signature]) -> UnsignedTx:
    """The withdrawal's first transaction, which must be at the requested ``(chain, from, nonce)``."""
    first = UnsignedTx.parse(earlier[0].unsigned_tx)
    if (first.chain_id, first.sender, first.nonce) != (unsigned.chain_id, unsigned.sender, unsigned.nonce):
        raise Refusal("withdrawal_signed_elsewhere",
                      f"withdrawal {withdrawal_id} is already signed at nonce {first.nonce} on chain {first.chain_id}")
    return first


class _Repeated(Refusal):
    """A refusal already journaled for this very request: answered again, not recorded again."""
