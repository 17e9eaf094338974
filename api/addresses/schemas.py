"""Request and response models of the deposit address routes."""

from __future__ import annotations

import uuid
from datetime import datetime

from pydantic import BaseModel, Field


class AllocateAddressIn(BaseModel):
    chain: str = Field(min_length=1, max_length=40, examples=["ethereum"])
    asset: str = Field(min_length=1, max_length=20, examples=["USDC"],
                       description="The chain's native coin or one of its tokens; every asset of a chain "
                                   "shares the user's one address there.")
    user_id: uuid.UUID | None = Field(default=None, description="Whose address (operator/admin only); "
                                                                "default: the caller.")


class DepositAddressOut(BaseModel):
    address: str = Field(description="EIP-55 checksummed.", examples=["0x9858EfFD232B4033E47d90003D41EC34EcaEda94"])
    chain: str
    asset: str
    derivation_index: int = Field(description="m/44'/60'/{account}'/0/{derivation_index} of the chain's account.")
    created_at: datetime = Field(description="When this address was assigned to the user.")
