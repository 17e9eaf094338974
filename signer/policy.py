"""What the signer checks about a transaction on its own, before its journal and its key see it.

The signer trusts nothing the platform says about a payment: it reads the asset, the real
destination and the amount from the transaction itself (a native transfer's ``to`` and
``value``; an ERC-20 ``transfer(to, amount)`` call to a token contract it knows), then applies
its own sanctions list and its own per-asset limits — and, whatever the payment, its chain's fee
caps (``core.settings.FeeCaps``): a value limit says nothing about what the gas may cost. Only
``core`` is imported (import-linter).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from eth_utils import to_checksum_address

from core.sanctions import SanctionsList
from core.settings import ChainSettings, FeeCaps, WithdrawalLimit, default_signer_fee_caps
from core.sign_requests import UnsignedTx, decode_erc20_transfer


class Refusal(Exception):
    """The signer will not sign this request; ``reason`` is one of ``REFUSAL_REASONS``."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


@dataclass(frozen=True)
class Payment:
    """What a transaction really does, read from its bytes."""

    chain: str
    asset: str
    destination: str  # EIP-55
    amount: int  # minor units of the asset


@dataclass(frozen=True)
class ChainPolicy:
    name: str
    chain_id: int
    account: int
    native: str
    tokens: dict[str, str]  # token contract (lowercase) → symbol


class Policy:
    def __init__(self, chains: Sequence[ChainSettings], limits: dict[str, WithdrawalLimit],
                 sanctions: SanctionsList, *, fee_caps: Mapping[str, FeeCaps] | None = None) -> None:
        """``fee_caps`` by chain name; None: the settings' defaults (the devnet chains)."""
        self.chains = {
            chain.chain_id: ChainPolicy(chain.name, chain.chain_id, chain.account, chain.native,
                                        {address.lower(): symbol for symbol, address in chain.tokens.items()})
            for chain in chains
        }
        self.limits = {asset: (limit.minor(limit.single), limit.minor(limit.daily)) for asset, limit in limits.items()}
        self.sanctions = sanctions
        self.fee_caps = dict(default_signer_fee_caps() if fee_caps is None else fee_caps)

    def chain(self, unsigned: UnsignedTx) -> ChainPolicy:
        chain = self.chains.get(unsigned.chain_id)
        if chain is None:
            raise Refusal("unknown_chain", f"chain id {unsigned.chain_id} is not configured on this signer")
        return chain

    def payment(self, unsigned: UnsignedTx) -> Payment:
        chain = self.chain(unsigned)
        token = chain.tokens.get(unsigned.to.lower())
        if token is not None:
            call = decode_erc20_transfer(unsigned.data)
            if call is None or unsigned.value != 0:
                raise Refusal("unknown_asset", f"a call to the {token} contract that is not a plain transfer")
            destination, amount = call
            return Payment(chain.name, token, to_checksum_address(destination), amount)
        if unsigned.data != "0x":
            # Arbitrary calls (approve, contract interactions) never leave through withdrawals.
            raise Refusal("unknown_asset", "a call with data to a contract that is not a configured token")
        return Payment(chain.name, chain.native, to_checksum_address(unsigned.to), unsigned.value)

    def check(self, payment: Payment, signed_last_24h: int) -> None:
        """Sanctions, then the single and rolling 24 h limits (``signed_last_24h``: the journal's sum)."""
        if payment.destination in self.sanctions:
            raise Refusal("sanctioned_address", f"{payment.destination} is on the signer's sanctions list")
        limits = self.limits.get(payment.asset)
        if limits is None:
            # Fail closed: an asset without limits configured is an asset the signer does not move.
            raise Refusal("single_limit_exceeded", f"no limits are configured for {payment.asset}")
        single, daily = limits
        if payment.amount > single:
            raise Refusal("single_limit_exceeded", f"{payment.amount} is above the single limit {single} "
                                                   f"({payment.asset}, minor units)")
        if signed_last_24h + payment.amount > daily:
            raise Refusal("daily_limit_exceeded", f"{signed_last_24h} already signed in 24 h; another "
                                                  f"{payment.amount} would pass the daily limit {daily} "
                                                  f"({payment.asset}, minor units)")

    def check_fees(self, unsigned: UnsignedTx, signed_at_nonce: int, fees_last_24h: int) -> None:
        """The chain's fee caps, then its replacements per nonce, then its rolling 24 h fee budget.

        ``signed_at_nonce``: transactions the journal already signed at this nonce; ``fees_last_24h``:
        the worst-case fees (gas limit × max fee per gas) of everything signed on the chain in 24 h.
        """
        chain = self.chain(unsigned)
        caps = self.fee_caps.get(chain.name)
        if caps is None:
            # Fail closed, as for an asset without limits.
            raise Refusal("no_fee_caps", f"no fee caps are configured for {chain.name}")
        breach = caps.breach(unsigned.gas, unsigned.max_fee_per_gas, unsigned.max_priority_fee_per_gas)
        if breach is not None:
            raise Refusal(*breach)
        if signed_at_nonce > caps.max_replacements:
            raise Refusal("too_many_replacements", f"nonce {unsigned.nonce} already has its first transaction and "
                                                   f"{caps.max_replacements} replacements")
        worst_case = unsigned.gas * unsigned.max_fee_per_gas
        if fees_last_24h + worst_case > caps.daily_fee_budget:
            raise Refusal("fee_budget_exceeded", f"{fees_last_24h} wei of fees signed on {chain.name} in 24 h; another "
                                                 f"{worst_case} would pass the budget {caps.daily_fee_budget}")
