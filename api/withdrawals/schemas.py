"""Request and response models of the withdrawal routes."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from core.money import AmountText
from custody.withdrawals.service import WithdrawalView
from custody.withdrawals.states import STATES as WITHDRAWAL_STATES

WithdrawalState = Literal["requested", "awaiting_travel_rule", "pending_approval", "approved", "signing", "signed",
                          "broadcast", "confirmed", "failed", "rolled_back"]
assert set(WithdrawalState.__args__) == set(WITHDRAWAL_STATES)  # type: ignore[attr-defined]


class TravelRuleIn(BaseModel):
    """Beneficiary data (FATF R.16, IVMS101 natural or legal person), required above the asset's threshold."""

    model_config = ConfigDict(extra="forbid")

    beneficiary_name: str = Field(min_length=1, max_length=200, examples=["Ada Lovelace"])
    beneficiary_account: str | None = Field(default=None, max_length=200,
                                            description="The beneficiary's account at their VASP, if any.")
    beneficiary_vasp: str | None = Field(default=None, max_length=200, examples=["Example Exchange Ltd"])
    beneficiary_address: str | None = Field(default=None, max_length=500, description="Geographic address.")
    beneficiary_country: str | None = Field(default=None, pattern=r"^[A-Z]{2}$", examples=["GB"])
    travel_address: str | None = Field(
        default=None, max_length=500, examples=["ta2W2HPKfHxgSgrzY178Mk..."],
        description="The beneficiary VASP's TRP Travel Address for this account: the withdrawal then waits "
                    "(awaiting_travel_rule) until that VASP accepts the transfer over TRP. Without one (an unhosted "
                    "wallet, or a VASP without TRP), the data is recorded and the withdrawal goes on.")


class WithdrawalRequestIn(BaseModel):
    chain: str = Field(min_length=1, max_length=40, examples=["ethereum"])
    asset: str = Field(min_length=1, max_length=20, examples=["USDC"])
    to_address: str = Field(min_length=1, max_length=100, description="EIP-55 checksummed (or all one case).",
                            examples=["0x70997970C51812dc3A010C7d01b50e0d17dc79C8"])
    amount: AmountText
    totp_code: str | None = Field(default=None, max_length=20,
                                  description="A current TOTP code: required when the account has MFA on.")
    travel_rule: TravelRuleIn | None = None


class ApprovalIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    totp_code: str | None = Field(default=None, max_length=20, examples=["123456"],
                                  description="A current TOTP code of the approving operator, each code once: every "
                                              "approval needs one (approvers must have MFA on).")


class CancelIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    totp_code: str | None = Field(default=None, max_length=20, examples=["123456"],
                                  description="A current TOTP code of the cancelling operator (operators must have "
                                              "MFA on, as for an approval).")


class WithdrawalListQuery(BaseModel):
    limit: int = Field(default=50, ge=1, le=100)
    cursor: str | None = Field(default=None, max_length=500)
    state: WithdrawalState | None = None
    user_id: uuid.UUID | None = Field(default=None, description="Staff only: one user's withdrawals.")


class WithdrawalOut(BaseModel):
    id: uuid.UUID
    user_id: uuid.UUID
    state: WithdrawalState
    chain: str
    asset: str
    to_address: str
    amount: str = Field(description="Sent to to_address; the hold is amount + fee.")
    fee: str = Field(description="The platform's flat fee for this asset, charged on confirmation.")
    approvals: int
    approvals_required: int = Field(description="2 above the four-eyes threshold: two different operators.")
    nonce: int | None = None
    tx_hash: str | None = Field(default=None, description="The transaction mined (or last broadcast).")
    block_number: int | None = None
    confirmations: int = 0
    gas_cost_wei: str | None = Field(default=None, description="What the hot wallet paid the network (platform cost).")
    failure_reason: str | None = None
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, view: WithdrawalView) -> WithdrawalOut:
        row = view.withdrawal
        return cls(id=row.id, user_id=row.user_id, state=row.state, chain=row.chain,  # type: ignore[arg-type]
                   asset=row.asset, to_address=row.to_address, amount=view.currency.format(row.amount),
                   fee=view.currency.format(row.fee), approvals=view.approvals,
                   approvals_required=row.approvals_required, nonce=row.nonce, tx_hash=row.tx_hash,
                   block_number=row.block_number, confirmations=row.confirmations,
                   gas_cost_wei=None if row.gas_cost is None else str(row.gas_cost),
                   failure_reason=row.failure_reason, created_at=row.created_at, updated_at=row.updated_at)


class WithdrawalListOut(BaseModel):
    items: list[WithdrawalOut]
    next_cursor: str | None
