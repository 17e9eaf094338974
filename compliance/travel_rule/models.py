"""The Travel Rule transfer table (migration 0012).

One row per transfer of identity data with a counterparty VASP, outbound (we send it before a
withdrawal) or inbound (a counterparty sent it about a deposit). The four IVMS101 documents are
kept in snake_case (``compliance.travel_rule.ivms101``); the exact message sent or received is
kept as well (``wire_ivms101``), so an officer can show a regulator what was actually exchanged,
with whom (``counterparty``, ``travel_address``), who decided what and when. The row is the
current state; each change is an audit event (aggregate ``travel_rule``). Nothing is deleted.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import CheckConstraint, ForeignKey, Index, String, Text, UniqueConstraint, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from compliance.travel_rule.states import DIRECTIONS, LIVE, STATES
from core.db import Base, IdMixin, Money, TimestampMixin


def _listed(values: tuple[str, ...]) -> str:
    return ", ".join(f"'{value}'" for value in values)


class TravelRuleTransfer(IdMixin, TimestampMixin, Base):
    __tablename__ = "travel_rule_transfers"
    __table_args__ = (
        CheckConstraint(f"state IN ({_listed(STATES)})", name="state_known"),
        CheckConstraint(f"direction IN ({_listed(DIRECTIONS)})", name="direction_known"),
        CheckConstraint("amount > 0", name="amount_positive"),
        # An outbound transfer is about money we send (a withdrawal), an inbound one about money
        # we receive (a deposit).
        CheckConstraint("(direction = 'outbound' AND deposit_id IS NULL)"
                        " OR (direction = 'inbound' AND withdrawal_id IS NULL)", name="link_matches_direction"),
        CheckConstraint("(state IN ('accepted', 'rejected')) = (decided_at IS NOT NULL)", name="decided_when_final"),
        CheckConstraint("state IN ('draft', 'expired') OR sent_at IS NOT NULL", name="sent_has_time"),
        # The compliance views: newest first, by state or direction.
        Index("ix_travel_rule_transfers_created", "created_at", "id"),
        Index("ix_travel_rule_transfers_state_created", "state", "created_at"),
        Index("ix_travel_rule_transfers_direction_created", "direction", "created_at"),
        # What the expiry job reads: the few transfers still waiting.
        Index("ix_travel_rule_transfers_expiring", "expires_at", postgresql_where=text("state IN ('draft', 'sent')")),
        # One live transfer per withdrawal and per deposit (an expired one may be followed by another).
        Index("uq_travel_rule_transfers_withdrawal_live", "withdrawal_id", unique=True,
              postgresql_where=text(f"withdrawal_id IS NOT NULL AND state IN ({_listed(LIVE)})")),
        Index("uq_travel_rule_transfers_deposit_live", "deposit_id", unique=True,
              postgresql_where=text(f"deposit_id IS NOT NULL AND state IN ({_listed(LIVE)})")),
        Index("ix_travel_rule_transfers_user", "user_id", "created_at"),
        UniqueConstraint("direction", "request_identifier", name="direction_request"),
    )
    __mapper_args__ = {"eager_defaults": True}  # server defaults come back with the INSERT (async: no lazy loads)

    # The integrator's own reference: the same external_id again updates the same draft.
    external_id: Mapped[str | None] = mapped_column(String(200), unique=True)
    direction: Mapped[str] = mapped_column(String(10))
    state: Mapped[str] = mapped_column(String(10))
    # IVMS101, snake_case (compliance.travel_rule.ivms101.Document's parts).
    originator: Mapped[dict[str, Any]] = mapped_column(JSONB)
    beneficiary: Mapped[dict[str, Any]] = mapped_column(JSONB)
    originating_vasp: Mapped[dict[str, Any]] = mapped_column(JSONB)
    beneficiary_vasp: Mapped[dict[str, Any]] = mapped_column(JSONB)
    asset: Mapped[str] = mapped_column(ForeignKey("currencies.code"))
    amount: Mapped[int] = mapped_column(Money)  # minor units of the asset
    chain: Mapped[str] = mapped_column(String(40))
    destination: Mapped[str] = mapped_column(String(128))  # the beneficiary's address on chain
    tx_hash: Mapped[str | None] = mapped_column(String(128))
    withdrawal_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("withdrawals.id"))
    deposit_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("deposits.id"))
    user_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("users.id"))  # our customer, if any
    # TRP: the counterparty's Travel Address (or inquiry URL) for outbound transfers; the
    # identifier of every message about this transfer; the counterparty's callback (inbound: where
    # our resolution goes; outbound: the approval's callback, where the txid goes).
    travel_address: Mapped[str | None] = mapped_column(Text)
    request_identifier: Mapped[str] = mapped_column(String(200))  # unique per direction (both sides may be ours)
    callback_url: Mapped[str | None] = mapped_column(Text)
    # Who the counterparty was, as authenticated (the mTLS peer's certificate name).
    counterparty: Mapped[str | None] = mapped_column(String(200))
    # The SHA-256 of the certificate the counterparty presented when our inquiry went to it (outbound)
    # or its inquiry came from it (inbound), migration 0022: every later message about the transfer
    # (a callback, a confirmation) must come with that very certificate. None: nothing pinned yet.
    counterparty_fingerprint: Mapped[str | None] = mapped_column(String(64))
    # The IVMS101 message (camelCase) exactly as last sent or received.
    wire_ivms101: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    reason: Mapped[str | None] = mapped_column(Text)  # why it was rejected (or expired)
    created_by: Mapped[uuid.UUID | None]  # None: received over TRP
    decided_by: Mapped[uuid.UUID | None]  # our officer, when we decided (inbound); None: the counterparty or a rule
    send_requested_at: Mapped[datetime | None]  # "send": the compliance worker delivers it
    sent_at: Mapped[datetime | None]
    decided_at: Mapped[datetime | None]
    expires_at: Mapped[datetime]
