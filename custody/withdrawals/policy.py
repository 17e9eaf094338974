"""What a withdrawal request asks of compliance, defined here and answered from above.

Custody sits below compliance: it may not import the screening lists, the KYC limits or the
Travel Rule service, yet a request must pass them before anything is held. So custody names the
checks it needs (``WithdrawalChecks``) and compliance implements them
(``compliance.withdrawal_checks``); the process wiring (``cli.registry``) installs that
implementation at start. A process that never installed one fails on the first withdrawal
instead of letting it through unchecked.
"""

from __future__ import annotations

import uuid
from typing import Any, Protocol

from sqlalchemy.ext.asyncio import AsyncSession

from core.settings import Settings
from custody.ledger import CurrencyInfo
from custody.withdrawals.models import Withdrawal


class WithdrawalChecks(Protocol):
    async def screen_destination(self, session: AsyncSession, address: str) -> dict[str, Any] | None:
        """The sanctions listing of ``address`` (as recorded in the audit event), or None."""

    async def check_limit(self, session: AsyncSession, settings: Settings, user_id: uuid.UUID,
                          unit: CurrencyInfo, amount: int) -> None:
        """Raise a 403 when ``amount`` would take the user's last 24 hours above their KYC limit."""

    def check_travel_rule(self, travel_rule: dict[str, Any]) -> None:
        """Before anything is written: the Travel Address decodes and the beneficiary VASP is named."""

    async def open_travel_rule(self, session: AsyncSession, settings: Settings, withdrawal: Withdrawal,
                               travel_rule: dict[str, Any], actor: uuid.UUID) -> uuid.UUID:
        """Open (and queue for sending) the outbound Travel Rule transfer the withdrawal waits for."""


_installed: WithdrawalChecks | None = None


def install(checks: WithdrawalChecks) -> None:
    global _installed
    _installed = checks


def checks() -> WithdrawalChecks:
    if _installed is None:
        raise RuntimeError("no WithdrawalChecks installed: the process must call cli.registry.load() at start")
    return _installed
