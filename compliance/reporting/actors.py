"""Report jobs of the compliance worker (queue ``reports``): generation, the daily schedule, reconciliation."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from compliance.reporting import service as reports
from core.file_stores import file_store
from core.storage import close_after_transaction
from core.time import utcnow
from jobs.context import current_settings
from jobs.registry import job


# A year of a busy jurisdiction's transfers takes longer than the default minute.
@job(reports.GENERATE_REPORT, queue="reports", time_limit_ms=15 * 60_000)
async def generate_report(session: AsyncSession, report_id: str) -> None:
    settings = current_settings()
    # The reports store (a directory, or the bucket the API replicas read from), open until the
    # transaction is settled: a rollback removes the files through it.
    store = file_store(settings, "reports")
    try:
        await reports.generate(session, uuid.UUID(report_id), store=store,
                               jurisdictions_file=settings.compliance_jurisdictions_file,
                               chains=settings.chains, xpub_file=settings.xpub_file,  # reconciliation reads the chains
                               signer_public_key_file=settings.signer_public_key_file)
    finally:
        close_after_transaction(session, store)


@job("compliance.schedule_reports", queue="reports")
async def schedule_reports(session: AsyncSession, as_of: str | None = None) -> None:
    """Queue the daily reports for the day before ``as_of`` (default: now). A test passes the
    moment it pretends it is, rather than waiting for midnight."""
    settings = current_settings()
    moment = datetime.fromisoformat(as_of) if as_of else utcnow()
    await reports.schedule_daily(session, moment, settings.compliance_report_jurisdictions,
                                 settings.compliance_jurisdictions_file)


@job("compliance.reconcile_balances", queue="reports")
async def reconcile_balances(session: AsyncSession, as_of: str | None = None) -> None:
    """Queue the ``reconciliation`` report of the interval that ended before ``as_of`` (default: now):
    on-chain balances of the hot wallets and deposit addresses against the ledger's liabilities. A
    test passes the moment it pretends it is, rather than waiting for the next interval."""
    settings = current_settings()
    moment = datetime.fromisoformat(as_of) if as_of else utcnow()
    await reports.schedule_reconciliation(session, moment, settings.reconciliation_interval_hours,
                                          settings.reconciliation_jurisdiction, settings.compliance_jurisdictions_file)
