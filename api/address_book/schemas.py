"""Request and response models of the address book routes."""

from __future__ import annotations

import uuid
from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from custody.withdrawals.address_book import Allowlist, BookPage, usable
from custody.withdrawals.models import AddressBookEntry

TOTP_CODE = "A current TOTP code, the same step-up as a withdrawal request: required when the account has MFA on."


class EntryIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    chain: str = Field(min_length=1, max_length=40, examples=["ethereum"])
    asset: str | None = Field(default=None, min_length=1, max_length=10, examples=["USDC"],
                              description="A currency code of the chain: the entry takes withdrawals of that asset "
                                          "only. Absent: any asset of the chain.")
    address: str = Field(min_length=1, max_length=100, description="EIP-55 checksummed (or all one case).",
                         examples=["0x70997970C51812dc3A010C7d01b50e0d17dc79C8"])
    label: str = Field(min_length=1, max_length=100, examples=["My hardware wallet"])
    totp_code: str | None = Field(default=None, max_length=20, description=TOTP_CODE)


class EntryOut(BaseModel):
    id: uuid.UUID
    chain: str
    asset: str | None = Field(description="The only asset a withdrawal to it may move; null: any asset of the chain.")
    address: str = Field(description="EIP-55, as a withdrawal request stores its destination.")
    label: str
    created_at: datetime
    usable_at: datetime = Field(description="From then on a withdrawal may go to it while the allowlist is on "
                                            "(created_at + the platform's cooling-off period).")
    usable: bool = Field(description="usable_at has passed.")

    @classmethod
    def of(cls, entry: AddressBookEntry) -> EntryOut:
        return cls(id=entry.id, chain=entry.chain, asset=entry.asset, address=entry.address, label=entry.label,
                   created_at=entry.created_at, usable_at=entry.usable_at, usable=usable(entry))


class BookQuery(BaseModel):
    limit: int = Field(default=50, ge=1, le=100)
    cursor: str | None = Field(default=None, max_length=500, description="`next_cursor` of the previous page.")


OFF_AT = "While a turn-off is pending: when the allowlist stops applying (asked + the cooling-off). Else null."


class BookOut(BaseModel):
    allowlist_enabled: bool = Field(description="On: withdrawals go only to usable entries of this book (still on "
                                                "while a turn-off is pending).")
    allowlist_off_at: datetime | None = Field(description=OFF_AT)
    items: list[EntryOut]
    next_cursor: str | None

    @classmethod
    def of(cls, page: BookPage) -> BookOut:
        return cls(allowlist_enabled=page.allowlist.enabled, allowlist_off_at=page.allowlist.off_at,
                   items=[EntryOut.of(entry) for entry in page.items], next_cursor=page.next_cursor)


class AllowlistIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    enabled: bool
    totp_code: str | None = Field(default=None, max_length=20,
                                  description=TOTP_CODE + " Only turning the allowlist off asks for it.")


class AllowlistOut(BaseModel):
    enabled: bool = Field(description="Whether the allowlist applies now (still true while a turn-off is pending).")
    off_at: datetime | None = Field(description=OFF_AT)

    @classmethod
    def of(cls, allowlist: Allowlist) -> AllowlistOut:
        return cls(enabled=allowlist.enabled, off_at=allowlist.off_at)
