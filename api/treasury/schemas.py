"""Request and response models of the treasury routes."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field

from custody.ledger import CurrencyInfo
from custody.treasury.hot_cold_models import Refill
from custody.treasury.models import Sweep
from custody.treasury.queries import SweepPage, SweepTotal
from custody.treasury.wallets import AssetView, ChainView, WalletsView

# --- hot and cold wallets, refills (custody.treasury.hot_cold, refills, wallets) -----------------

RefillState = Literal["open", "submitted", "confirmed", "failed", "expired"]


class RefillTransaction(BaseModel):
    """The unsigned EIP-1559 transaction the cold custodian signs offline, exactly (no access list).

    For eth-account: ``{"type": 2, "chainId": chain_id, "nonce": nonce, "to": to, "value": int(value),
    "data": data, "gas": gas, "maxFeePerGas": int(max_fee_per_gas), "maxPriorityFeePerGas":
    int(max_priority_fee_per_gas), "accessList": []}``, signed by the key of ``sender``."""

    type: Literal[2] = 2
    chain_id: int
    sender: str = Field(description="The cold wallet: the signature must recover to it.")
    nonce: int = Field(description="The cold wallet's next nonce when the refill was asked for.")
    to: str = Field(description="The hot wallet (native coin), or the token contract.")
    value: str = Field(description="Wei, a decimal string (0 for a token transfer).")
    data: str = Field(description='"0x", or the token\'s transfer(hot wallet, amount) call.')
    gas: int
    max_fee_per_gas: str = Field(description="Wei per gas, a decimal string: the fee quote when it was asked for.")
    max_priority_fee_per_gas: str


class RefillOut(BaseModel):
    id: uuid.UUID
    chain: str
    asset: str
    state: RefillState
    amount: str = Field(description="What the hot wallet receives: enough to bring it back to its target.")
    hot_balance: str = Field(description="What the hot wallet held when the refill was asked for.")
    cold_wallet: str
    hot_wallet: str
    transaction: RefillTransaction
    tx_hash: str | None = None
    submitted_by: uuid.UUID | None = None
    submitted_at: datetime | None = None
    block_number: int | None = None
    created_at: datetime

    @classmethod
    def of(cls, refill: Refill, unit: CurrencyInfo) -> RefillOut:
        transaction = RefillTransaction(
            chain_id=refill.chain_id, sender=refill.cold_wallet, nonce=refill.nonce, to=refill.tx_to,
            value=str(refill.tx_value), data=refill.tx_data, gas=refill.gas,
            max_fee_per_gas=str(refill.max_fee_per_gas), max_priority_fee_per_gas=str(refill.max_priority_fee_per_gas))
        return cls(id=refill.id, chain=refill.chain, asset=refill.asset, state=refill.state,  # type: ignore[arg-type]
                   amount=unit.format(refill.amount), hot_balance=unit.format(refill.hot_balance),
                   cold_wallet=refill.cold_wallet, hot_wallet=refill.hot_wallet, transaction=transaction,
                   tx_hash=refill.tx_hash, submitted_by=refill.submitted_by, submitted_at=refill.submitted_at,
                   block_number=refill.block_number, created_at=refill.created_at)


class RefillListQuery(BaseModel):
    limit: int = Field(default=50, ge=1, le=100)
    cursor: str | None = Field(default=None, max_length=500)
    state: RefillState | None = None


class RefillListOut(BaseModel):
    items: list[RefillOut]
    next_cursor: str | None = None


class RefillSubmitIn(BaseModel):
    raw_tx: str = Field(min_length=4, max_length=20_000, pattern=r"^0x[0-9a-fA-F]+$",
                        description="The signed transaction, 0x-hex, as the cold custodian's device produced it.",
                        examples=["0x02f8…"])


class LiabilitiesOut(BaseModel):
    available: str
    held: str
    total: str = Field(description="available + held of every customer account.")


class OnChainOut(BaseModel):
    hot: str
    cold: str
    deposit_addresses: str
    total: str


class AssetWalletsOut(BaseModel):
    asset: str
    liabilities: LiabilitiesOut
    on_chain: OnChainOut = Field(description="Summed over the configured chains that answered.")
    difference: str = Field(description="on_chain.total − liabilities.total: negative is a shortfall.")

    @classmethod
    def of(cls, view: AssetView) -> AssetWalletsOut:
        text = view.unit.format
        return cls(asset=view.asset,
                   liabilities=LiabilitiesOut(available=text(view.available), held=text(view.held),
                                              total=text(view.liabilities)),
                   on_chain=OnChainOut(hot=text(view.hot), cold=text(view.cold),
                                       deposit_addresses=text(view.deposit_addresses), total=text(view.on_chain)),
                   difference=("-" + text(-view.difference)) if view.difference < 0 else text(view.difference))


class ChainAssetOut(OnChainOut):
    asset: str


class ChainWalletsOut(BaseModel):
    chain: str
    block: int | None = Field(description="The block every balance of this chain was read at.")
    hot_wallet: str | None
    cold_wallet: str | None
    deposit_addresses_assigned: int
    deposit_addresses_read: int = Field(description="At most a bounded number per view (the oldest first).")
    assets: list[ChainAssetOut]
    error: str | None = Field(default=None, description="Why this chain is left out of the sums (its node failed).")

    @classmethod
    def of(cls, view: ChainView, units: dict[str, CurrencyInfo]) -> ChainWalletsOut:
        assets = []
        for holding in view.holdings:
            text = units[holding.asset].format
            assets.append(ChainAssetOut(asset=holding.asset, hot=text(holding.hot), cold=text(holding.cold),
                                        deposit_addresses=text(holding.deposit_addresses), total=text(holding.total)))
        return cls(chain=view.chain, block=view.block, hot_wallet=view.hot_wallet, cold_wallet=view.cold_wallet,
                   deposit_addresses_assigned=view.deposit_addresses_assigned,
                   deposit_addresses_read=view.deposit_addresses_read, assets=assets, error=view.error)


class WalletsOut(BaseModel):
    assets: list[AssetWalletsOut]
    chains: list[ChainWalletsOut]
    complete: bool = Field(description="False when a chain did not answer or not every deposit address was read.")

    @classmethod
    def of(cls, view: WalletsView) -> WalletsOut:
        units = {asset.asset: asset.unit for asset in view.assets}
        return cls(assets=[AssetWalletsOut.of(asset) for asset in view.assets],
                   chains=[ChainWalletsOut.of(chain, units) for chain in view.chains], complete=view.complete)


# --- sweeps (custody.treasury.service, pipeline, queries) ----------------------------------------

SweepState = Literal["pending_topup", "topup_sent", "ready", "sweeping", "confirmed", "failed"]


class SweepListQuery(BaseModel):
    chain: str | None = Field(default=None, max_length=40)
    asset: str | None = Field(default=None, max_length=10)
    state: SweepState | None = None
    limit: int = Field(default=50, ge=1, le=200)
    cursor: str | None = Field(default=None, max_length=500)


class SweepOut(BaseModel):
    """One deposit address's balance of one asset on its way to the chain's hot wallet."""

    id: uuid.UUID
    chain: str
    asset: str
    address: str = Field(description="The deposit address swept (EIP-55).")
    derivation_index: int = Field(description="m/44'/60'/{account}'/0/{index}: the key the signer derives.")
    hot_wallet: str
    amount: str = Field(description="What is moved to the hot wallet, in the asset's major units.")
    state: SweepState
    topup_amount: str = Field(description="The native coin the hot wallet sent for the sweep's gas (\"0\": none).")
    topup_tx_hash: str | None
    sweep_tx_hash: str | None
    topup_gas_cost: str | None = Field(description="What the top-up cost in gas (the chain's native coin).")
    sweep_gas_cost: str | None = Field(description="What the sweep cost in gas (the chain's native coin).")
    block_number: int | None
    confirmations: int
    failure_reason: str | None
    alert: str | None = Field(description="Why it waits (fees above the signer's caps), while it does.")
    created_at: datetime
    updated_at: datetime
    finished_at: datetime | None

    @classmethod
    def of(cls, sweep: Sweep, unit: CurrencyInfo, native: CurrencyInfo) -> SweepOut:
        def gas(wei: int | None) -> str | None:
            return None if wei is None else native.format(wei)

        return cls(id=sweep.id, chain=sweep.chain, asset=sweep.asset, address=sweep.address,
                   derivation_index=sweep.derivation_index, hot_wallet=sweep.hot_wallet,
                   amount=unit.format(sweep.amount), state=sweep.state,  # type: ignore[arg-type]
                   topup_amount=native.format(sweep.topup_amount),
                   topup_tx_hash=sweep.topup_tx_hash, sweep_tx_hash=sweep.sweep_tx_hash,
                   topup_gas_cost=gas(sweep.topup_gas_cost), sweep_gas_cost=gas(sweep.sweep_gas_cost),
                   block_number=sweep.block_number, confirmations=sweep.confirmations,
                   failure_reason=sweep.failure_reason, alert=sweep.alert, created_at=sweep.created_at,
                   updated_at=sweep.updated_at, finished_at=sweep.finished_at)


class SweepTotalOut(BaseModel):
    """Under the list's filters, per chain and asset (every page alike)."""

    chain: str
    asset: str
    sweeps: int
    swept: str = Field(description="Confirmed sweeps, in the asset's major units.")
    in_flight: str = Field(description="Sweeps not final yet, in the asset's major units.")
    topup_gas: str = Field(description="Gas of the top-ups, in the chain's native coin.")
    sweep_gas: str = Field(description="Gas of the sweeps, in the chain's native coin.")


class SweepListOut(BaseModel):
    items: list[SweepOut]
    totals: list[SweepTotalOut]
    next_cursor: str | None

    @classmethod
    def of(cls, page: SweepPage, totals: list[SweepTotal], units: dict[str, CurrencyInfo],
           natives: dict[str, str]) -> SweepListOut:
        def native(chain: str, asset: str) -> CurrencyInfo:
            # A chain no longer configured: its gas is shown in the asset's own unit only if that is native.
            return units[natives.get(chain, asset)]

        return cls(items=[SweepOut.of(sweep, units[sweep.asset], native(sweep.chain, sweep.asset))
                          for sweep in page.items],
                   totals=[SweepTotalOut(chain=total.chain, asset=total.asset, sweeps=total.sweeps,
                                         swept=units[total.asset].format(total.swept),
                                         in_flight=units[total.asset].format(total.in_flight),
                                         topup_gas=native(total.chain, total.asset).format(total.topup_gas),
                                         sweep_gas=native(total.chain, total.asset).format(total.sweep_gas))
                           for total in totals],
                   next_cursor=page.next_cursor)
