"""The rules sweep of the compliance worker (queue ``compliance``)."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from compliance.review import rules
from core.time import utcnow
from jobs.context import current_settings
from jobs.registry import job


@job("compliance.apply_rules", queue="compliance", max_retries=3)
async def apply_rules(session: AsyncSession) -> None:
    """Flag the transfers since the last sweep that the automatic rules find (compliance.review.rules)."""
    settings = current_settings()
    await rules.sweep(session, utcnow(), jurisdiction=settings.compliance_rules_jurisdiction,
                      settle_seconds=settings.compliance_rules_settle_seconds,
                      jurisdictions_file=settings.compliance_jurisdictions_file)
