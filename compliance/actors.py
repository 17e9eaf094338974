"""Compliance jobs (the compliance worker consumes the ``compliance`` and ``reports`` queues)."""

from __future__ import annotations

import uuid
from datetime import datetime
from pathlib import Path

from sqlalchemy.ext.asyncio import AsyncSession

from compliance import reports, rules
from core.settings import Settings
from core.time import utcnow
from jobs.context import current_settings
from jobs.registry import job


def reports_dir(settings: Settings) -> Path:
    return settings.compliance_reports_dir or settings.data_dir / "reports"


# A year of a busy jurisdiction's transfers takes longer than the default minute.
@job("compliance.generate_report", queue="reports", time_limit_ms=15 * 60_000)
async def generate_report(session: AsyncSession, report_id: str) -> None:
    settings = current_settings()
    await reports.generate(session, uuid.UUID(report_id), reports_dir=reports_dir(settings),
                           jurisdictions_file=settings.compliance_jurisdictions_file)


@job("compliance.schedule_reports", queue="reports")
async def schedule_reports(session: AsyncSession, as_of: str | None = None) -> None:
    """Queue the daily reports for the day before ``as_of`` (default: now). A test passes the
    moment it pretends it is, rather than waiting for midnight."""
    settings = current_settings()
    moment = datetime.fromisoformat(as_of) if as_of else utcnow()
    await reports.schedule_daily(session, moment, settings.compliance_report_jurisdictions,
                                 settings.compliance_jurisdictions_file)


@job("compliance.apply_rules", queue="compliance", max_retries=3)
async def apply_rules(session: AsyncSession) -> None:
    """Flag the transfers since the last sweep that the automatic rules find (compliance.rules)."""
    settings = current_settings()
    await rules.sweep(session, utcnow(), jurisdiction=settings.compliance_rules_jurisdiction,
                      settle_seconds=settings.compliance_rules_settle_seconds,
                      jurisdictions_file=settings.compliance_jurisdictions_file)
