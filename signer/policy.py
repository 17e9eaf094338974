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
                 sanctions: SanctionsList, *, fee_caps: Mapping[str, FeeCaps] | None = None,
                 cold_wallets: Mapping[str, str] | None = None) -> None:
        """``fee_caps`` by chain name; None: the settings' defaults (the devnet chains). ``cold_wallets``
        by chain name (EIP-55): the signer's own copy, the only place a hot → cold transfer may go."""
        self.cold_wallets = dict(cold_wallets or {})
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

    def check_cold_transfer(self, payment: Payment) -> None:
        """A hot → cold transfer goes to the chain's cold wallet of this signer's configuration, or nowhere.

        Its value limits do not apply (the money stays in custody); this check is what replaces them.
        """
        cold = self.cold_wallets.get(payment.chain)
        if cold is None:
            raise Refusal("not_cold_wallet", f"no cold wallet is configured on this signer for {payment.chain}")
        if payment.destination != cold:
            raise Refusal("not_cold_wallet", f"{payment.destination} is not the cold wallet of {payment.chain} "
                                             f"({cold})")

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

    # --- sweeps and gas top-ups (signer.sweeps, core.sweep_requests) ------------------------------

    def check_sweep(self, unsigned: UnsignedTx, payment: Payment, *, deposit: str, hot_wallet: str) -> None:
        """A sweep goes from the deposit address the signer derived to its own hot wallet, nowhere else.

        No value limit: the money stays in custody. The fee caps still apply (``check_fees``).
        """
        if unsigned.sender != deposit:
            raise Refusal("wrong_sender", f"{unsigned.sender} is not the deposit address {deposit} of the index "
                                          "the request names")
        if payment.destination != hot_wallet:
            raise Refusal("wrong_destination", f"a sweep goes to the hot wallet {hot_wallet} of {payment.chain}, "
                                               f"not to {payment.destination}")

    def check_topup(self, unsigned: UnsignedTx, payment: Payment, *, deposit: str, hot_wallet: str,
                    gas_limit: int) -> None:
        """A gas top-up: the hot wallet pays the derived deposit address the native coin of one token
        transfer's gas — at most ``gas_limit`` × the top-up's own max fee per gas (the quote it was made
        at), and never more than the chain's per-transaction fee cap lets that transfer cost."""
        chain = self.chain(unsigned)
        if unsigned.sender != hot_wallet:
            raise Refusal("wrong_sender", f"{unsigned.sender} is not the hot wallet of {chain.name}: only it tops up")
        if payment.asset != chain.native:
            raise Refusal("unknown_asset", f"a top-up pays {chain.native}, not {payment.asset}")
        if payment.destination != deposit:
            raise Refusal("wrong_destination", f"a top-up goes to the deposit address {deposit} of the index the "
                                               f"request names, not to {payment.destination}")
        caps = self.fee_caps.get(chain.name)
        if caps is None:
            raise Refusal("no_fee_caps", f"no fee caps are configured for {chain.name}")
        most = min(gas_limit * unsigned.max_fee_per_gas, caps.max_fee_per_tx)
        if payment.amount > most:
            raise Refusal("topup_above_gas", f"a top-up of {payment.amount} wei is above the gas of one token "
                                             f"transfer, {most} wei ({gas_limit} gas × {unsigned.max_fee_per_gas} "
                                             f"wei/gas, capped at {caps.max_fee_per_tx})")
