"""Compliance jobs (the compliance worker consumes the ``compliance`` and ``reports`` queues)."""

from __future__ import annotations

import uuid
from datetime import datetime
from pathlib import Path

from sqlalchemy.ext.asyncio import AsyncSession

from compliance.reporting import service as reports
from compliance.review import rules
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
                           jurisdictions_file=settings.compliance_jurisdictions_file,
                           chains=settings.chains, xpub_file=settings.xpub_file)  # reconciliation reads the chains


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


@job("compliance.apply_rules", queue="compliance", max_retries=3)
async def apply_rules(session: AsyncSession) -> None:
    """Flag the transfers since the last sweep that the automatic rules find (compliance.review.rules)."""
    settings = current_settings()
    await rules.sweep(session, utcnow(), jurisdiction=settings.compliance_rules_jurisdiction,
                      settle_seconds=settings.compliance_rules_settle_seconds,
                      jurisdictions_file=settings.compliance_jurisdictions_file)


@job("compliance.send_travel_rule", queue="compliance")
async def send_travel_rule(session: AsyncSession, transfer_id: str) -> None:
    """Deliver one outbound Travel Rule transfer to the beneficiary's VASP (TRP), once it is asked to."""
    # The transport (and its TLS) loads only where it runs.
    from compliance.travel_rule import outbound

    await outbound.deliver(session, uuid.UUID(transfer_id), current_settings())


@job("compliance.confirm_travel_rule", queue="compliance")
async def confirm_travel_rule(session: AsyncSession, withdrawal_id: str) -> None:
    """Tell the beneficiary's VASP the txid of a withdrawal it accepted (or that it was canceled)."""
    from compliance.travel_rule import outbound

    await outbound.confirm(session, uuid.UUID(withdrawal_id), current_settings())


@job("compliance.expire_travel_rule", queue="compliance", max_retries=3)
async def expire_travel_rule(session: AsyncSession, as_of: str | None = None) -> None:
    """Expire the Travel Rule transfers past their deadline as of ``as_of`` (default: now). A test
    passes the moment it pretends it is, rather than waiting three days."""
    from compliance.travel_rule import outbound  # a withdrawal waiting on an expired transfer fails

    moment = datetime.fromisoformat(as_of) if as_of else utcnow()
    await outbound.expire(session, moment)
