"""Compliance routes: KYC (the user and the officers), jurisdiction reports and their admin view,
and the staff review of transactions."""

from __future__ import annotations

from aiohttp import web

from api.access import AUTHENTICATED, roles
from api.auth.principal import current
from api.compliance.schemas import (
    AdminReportListQuery,
    DownloadQuery,
    FlagIn,
    KycCaseOut,
    KycDecisionIn,
    KycMineOut,
    KycQueueOut,
    KycQueueQuery,
    KycSubmitIn,
    ReportIn,
    ReportListOut,
    ReportListQuery,
    ReportOut,
    ReportQueuedOut,
    ResolveIn,
    TransactionListOut,
    TransactionOut,
    TransactionQuery,
)
from api.http import path_uuid
from api.keys import SETTINGS
from api.middleware import db_session
from api.registry import Routes
from compliance import jurisdictions as jurisdiction_data
from compliance import kyc, reports, review

kyc_routes = Routes(tag="kyc")
compliance_routes = Routes(tag="compliance")
admin_compliance_routes = Routes(tag="admin")
transaction_review_routes = Routes(tag="admin")

OFFICERS = roles("compliance", "admin")


@kyc_routes.post("/me/kyc", access=AUTHENTICATED, body=KycSubmitIn, responses={201: KycMineOut},
                 name="kyc_submit")
async def kyc_submit(request: web.Request, body: KycSubmitIn) -> KycMineOut:
    """Submit (or, after `needs_info`, resubmit) identity data; the case becomes `pending`."""
    case = await kyc.submit(db_session(request), current(request).user_id, kyc.Submission(
        body.first_name, body.last_name, body.date_of_birth, body.country, body.address.model_dump()))
    return KycMineOut.of(case)


@kyc_routes.get("/admin/kyc/queue", access=OFFICERS, query=KycQueueQuery, responses={200: KycQueueOut},
                name="kyc_queue")
async def kyc_queue(request: web.Request, query: KycQueueQuery) -> KycQueueOut:
    """Pending cases, oldest first, with their age against the KYC SLA."""
    settings = request.config_dict[SETTINGS]
    return KycQueueOut.of(await kyc.queue(db_session(request), settings.kyc_sla_hours, query.limit))


@kyc_routes.post("/admin/kyc/{user_id}/decision", access=OFFICERS, body=KycDecisionIn, responses={200: KycCaseOut},
                 name="kyc_decide")
async def kyc_decide(request: web.Request, body: KycDecisionIn) -> KycCaseOut:
    """Approve, reject or ask for more information on a pending case (audited; the user is notified)."""
    case = await kyc.decide(db_session(request), path_uuid(request, "user_id", "kyc_case_not_found"), body.decision,
                            body.reason, current(request).user_id, body.level)
    return KycCaseOut.of(case)


@compliance_routes.post("/compliance/reports", access=OFFICERS, body=ReportIn, responses={202: ReportQueuedOut},
                        name="compliance_report_create")
async def compliance_report_create(request: web.Request, body: ReportIn) -> ReportQueuedOut:
    """Queue a report; the compliance worker generates its CSV and JSON files."""
    report = await reports.request(db_session(request), body.jurisdiction, body.type, body.period_start,
                                   body.period_end, requested_by=current(request).user_id,
                                   jurisdictions_file=request.config_dict[SETTINGS].compliance_jurisdictions_file)
    assert report is not None  # only scheduled requests (with a unique key) can be skipped
    return ReportQueuedOut(id=report.id, state=report.state)  # type: ignore[arg-type]


def _jurisdiction(request: web.Request) -> str:
    code = request.match_info["jurisdiction"]
    jurisdiction_data.get(code, request.config_dict[SETTINGS].compliance_jurisdictions_file)  # 422 if unknown
    return code


@compliance_routes.get("/compliance/reports/{jurisdiction}", access=OFFICERS, query=ReportListQuery,
                       responses={200: ReportListOut}, name="compliance_report_list")
async def compliance_report_list(request: web.Request, query: ReportListQuery) -> ReportListOut:
    """Reports of one jurisdiction, newest first, with state, SHA-256 and row count."""
    page = await reports.search(db_session(request), jurisdiction=_jurisdiction(request), type=query.type,
                                state=query.state, limit=query.limit, cursor=query.cursor)
    return ReportListOut(items=[ReportOut.of(item) for item in page.items], next_cursor=page.next_cursor)


@compliance_routes.get("/compliance/reports/{jurisdiction}/{report_id}/download", access=OFFICERS,
                       query=DownloadQuery, responses={200: "text/csv"}, name="compliance_report_download")
async def compliance_report_download(request: web.Request, query: DownloadQuery) -> web.StreamResponse:
    """The report file (`format=csv` or `json`); `X-Content-SHA256` is the hash recorded at generation."""
    report = await reports.get(db_session(request), path_uuid(request, "report_id", "report_not_found"),
                               _jurisdiction(request))
    path = reports.file_of(report, query.format)
    digest = report.sha256 if query.format == "csv" else report.json_sha256
    media = "text/csv; charset=utf-8" if query.format == "csv" else "application/json"
    # Streamed from disk: a year of transactions is not read into memory.
    return web.FileResponse(path, headers={
        "Content-Type": media, "X-Content-SHA256": digest or "",
        "Content-Disposition": f'attachment; filename="{report.jurisdiction}-{report.type}-{report.id}.{query.format}"'})


@admin_compliance_routes.get("/admin/compliance/reports", access=roles("admin"), query=AdminReportListQuery,
                             responses={200: ReportListOut}, name="compliance_admin_report_list")
async def compliance_admin_report_list(request: web.Request, query: AdminReportListQuery) -> ReportListOut:
    """Every jurisdiction's reports, newest first; filters `jurisdiction`, `type`, `state`."""
    page = await reports.search(db_session(request), jurisdiction=query.jurisdiction, type=query.type,
                                state=query.state, limit=query.limit, cursor=query.cursor)
    return ReportListOut(items=[ReportOut.of(item) for item in page.items], next_cursor=page.next_cursor)


REVIEWERS = roles("admin", "compliance", "support")


def _transfer_id(request: web.Request):
    return path_uuid(request, "tx_id", "transaction_not_found")


@transaction_review_routes.get("/admin/transactions", access=REVIEWERS, query=TransactionQuery,
                               responses={200: TransactionListOut}, name="compliance_transactions")
async def compliance_transactions(request: web.Request, query: TransactionQuery) -> TransactionListOut:
    """Every ledger transfer (deposits, withdrawals, escrow, credits), newest first, with its review."""
    filters = review.Filters(**query.model_dump(exclude={"limit", "cursor"}))
    page = await review.search(db_session(request), filters, limit=query.limit, cursor=query.cursor)
    return TransactionListOut(items=[TransactionOut.of(item) for item in page.items], next_cursor=page.next_cursor)


@transaction_review_routes.get("/admin/transactions/{tx_id}", access=REVIEWERS, responses={200: TransactionOut},
                               name="compliance_transaction")
async def compliance_transaction(request: web.Request) -> TransactionOut:
    """One transfer with its postings, business object state and review."""
    return TransactionOut.of(await review.get(db_session(request), _transfer_id(request)))


@transaction_review_routes.post("/admin/transactions/{tx_id}/flag", access=REVIEWERS, body=FlagIn,
                                responses={200: TransactionOut}, name="compliance_transaction_flag")
async def compliance_transaction_flag(request: web.Request, body: FlagIn) -> TransactionOut:
    """Flag a transfer for compliance review (409 while it is already flagged)."""
    return TransactionOut.of(await review.flag(db_session(request), _transfer_id(request), body.reason,
                                               current(request).user_id))


@transaction_review_routes.post("/admin/transactions/{tx_id}/resolve", access=OFFICERS, body=ResolveIn,
                                responses={200: TransactionOut}, name="compliance_transaction_resolve")
async def compliance_transaction_resolve(request: web.Request, body: ResolveIn) -> TransactionOut:
    """Resolve a flagged transfer as `cleared` or `reported`; resolving twice is a 409."""
    return TransactionOut.of(await review.resolve(db_session(request), _transfer_id(request), body.resolution,
                                                  body.note, current(request).user_id))
