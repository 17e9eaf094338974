"""Compliance's answer to ``custody.withdrawals.policy.WithdrawalChecks``: sanctions screening,
the KYC level's 24-hour limit and the Travel Rule, installed by ``cli.registry`` at start."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from compliance.kyc import limits
from compliance.screening import service as screening
from compliance.travel_rule import withdrawals as travel_rule_withdrawals
from core.settings import Settings
from custody.ledger import CurrencyInfo
from custody.withdrawals.models import Withdrawal


class ComplianceWithdrawalChecks:
    async def screen_destination(self, session: AsyncSession, address: str) -> dict[str, Any] | None:
        hit = await screening.screen_address(session, address)
        return None if hit is None else hit.as_dict()

    async def check_limit(self, session: AsyncSession, settings: Settings, user_id: uuid.UUID,
                          unit: CurrencyInfo, amount: int) -> None:
        await limits.check_withdrawal(session, settings.kyc_withdrawal_limits, user_id, unit, amount)

    def check_travel_rule(self, travel_rule: dict[str, Any]) -> None:
        travel_rule_withdrawals.check_request(travel_rule)

    async def open_travel_rule(self, session: AsyncSession, settings: Settings, withdrawal: Withdrawal,
                               travel_rule: dict[str, Any], actor: uuid.UUID) -> uuid.UUID:
        return await travel_rule_withdrawals.open_for_withdrawal(session, settings, withdrawal, travel_rule, actor)
