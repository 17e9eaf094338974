"""Travel Rule jobs of the compliance worker: confirm a mined withdrawal to the counterparty.

(Sending an inquiry is ``compliance.send_travel_rule`` in ``compliance.actors``.)
"""

from __future__ import annotations

import uuid

from sqlalchemy.ext.asyncio import AsyncSession

from compliance.travel_rule import outbound
from jobs.context import current_settings
from jobs.registry import job

# An unreachable counterparty is retried with Dramatiq's backoff for about a day, then the
# transfer stays draft until the expiry job ends it (and the withdrawal waiting on it).
TRP_RETRIES = 12


@job("compliance.confirm_travel_rule", queue="compliance", max_retries=TRP_RETRIES)
async def confirm_travel_rule(session: AsyncSession, withdrawal_id: str) -> None:
    await outbound.confirm(session, uuid.UUID(withdrawal_id), current_settings())
