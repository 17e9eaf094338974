"""The signer's fee caps, applied by the custody worker before it asks anything of the signer.

The caps are the signer's (``VIRTUOZ_SIGNER_FEE_CAPS``, ``core.settings.FeeCaps``), read here from the
same setting, so a quote or a fee bump above one is never sent only to be refused: the withdrawal
waits (the tracker asks again) and an operator is alerted — once per wait, by an audit event, a
metric and a log line, never on every tracker tick. ``Withdrawal.alert`` remembers the wait.
"""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from core import audit
from core.settings import Settings
from custody.chains.transactions import Fees
from custody.withdrawals import metrics
from custody.withdrawals.models import Withdrawal

log = logging.getLogger(__name__)

BUMPS_EXHAUSTED = "fee_bumps_exhausted"


def breach(settings: Settings, chain: str, gas: int, fees: Fees) -> tuple[str, str] | None:
    """``(reason, message)`` when the signer would refuse these fees on ``chain``; None when within its caps."""
    caps = settings.signer_fee_caps.get(chain)
    if caps is None:
        return "no_fee_caps", f"no fee caps are configured for {chain}: the signer signs nothing there"
    return caps.breach(gas, fees.max_fee_per_gas, fees.max_priority_fee_per_gas)


def bumps_allowed(settings: Settings, chain: str) -> int:
    """Fee bumps of a payment at one nonce: the signer's replacements less one, kept for a cancel."""
    caps = settings.signer_fee_caps.get(chain)
    return 0 if caps is None else caps.max_replacements - 1


def fee_data(gas: int, fees: Fees) -> dict[str, Any]:
    return {"gas": gas, "max_fee_per_gas": str(fees.max_fee_per_gas),
            "max_priority_fee_per_gas": str(fees.max_priority_fee_per_gas)}


async def alert(session: AsyncSession, withdrawal: Withdrawal, reason: str, message: str,
                data: dict[str, Any] | None = None) -> None:
    """Start waiting for ``reason``; alert only if the withdrawal was not already waiting for it."""
    if withdrawal.alert == reason:
        return
    withdrawal.alert = reason
    metrics.FEE_ALERTS.labels(reason, withdrawal.chain).inc()
    if reason == BUMPS_EXHAUSTED:
        log.error("withdrawal %s: %s; left for an operator (a cancel is still possible)", withdrawal.id, message)
        event = "withdrawal.fee_bumps_exhausted"
    else:
        log.warning("withdrawal %s waits: %s (%s)", withdrawal.id, message, reason)
        event = "withdrawal.fee_above_cap"
    await audit.append(session, "withdrawal", withdrawal.id, event,
                       {"state": withdrawal.state, "reason": reason, "message": message, **(data or {})},
                       actor="custody")


def clear(withdrawal: Withdrawal) -> None:
    """The withdrawal moves on: a later wait alerts again."""
    withdrawal.alert = None
