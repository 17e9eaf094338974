"""Compliance routes: KYC (the user and the officers), jurisdiction reports and their admin view,
and the staff review of transactions."""

from __future__ import annotations

from aiohttp import web

from api.access import AUTHENTICATED, roles
from api.compliance.schemas import (
    AdminReportListQuery,
    DownloadQuery,
    FlagIn,
    KycCaseOut,
    KycDecisionIn,
    KycMineOut,
    KycQueueOut,
    KycQueueQuery,
    KycSubmitForm,
    KycSubmitIn,
    ReconcileOut,
    ReportIn,
    ReportListOut,
    ReportListQuery,
    ReportOut,
    ReportQueuedOut,
    ResolveIn,
    TransactionListOut,
    TransactionOut,
    TransactionQuery,
    TravelRuleListOut,
    TravelRuleRecentQuery,
    TravelRuleTransferOut,
    TravelRuleUpsertIn,
)
from api.http import json_response, multipart_files, path_uuid, stored_file, streamed
from api.keys import CHAINS, FILE_STORE, REPORT_STORE, SETTINGS
from api.middleware import db_session
from api.principal import current
from api.registry import Routes
from compliance import jurisdictions as jurisdiction_data
from compliance.kyc import documents as kyc_documents
from compliance.kyc import service as kyc
from compliance.reporting import service as reports
from compliance.review import reconcile
from compliance.review import service as review
from compliance.travel_rule import service as travel_rule
from compliance.travel_rule.directory import Directory
from core.storage import IncomingFile

kyc_routes = Routes(tag="compliance", scopes="compliance")
compliance_routes = Routes(tag="compliance", scopes="compliance")
admin_compliance_routes = Routes(tag="admin", scopes="compliance")
transaction_review_routes = Routes(tag="admin", scopes="compliance")

OFFICERS = roles("compliance", "admin")

CURSOR = ("invalid_cursor",)
KYC_CASE_NOT_FOUND = {404: ("kyc_case_not_found",)}
TRANSACTION_NOT_FOUND = {404: ("transaction_not_found",)}


@kyc_routes.post("/me/kyc", access=AUTHENTICATED, scope=None, body=KycSubmitIn, form=KycSubmitForm, responses={201: KycMineOut},
                 name="kyc_submit",
                 errors={409: ("kyc_invalid_state",), 422: ("too_many_files", "unexpected_file")})
async def kyc_submit(request: web.Request, body: KycSubmitIn | None) -> KycMineOut:
    """Submit (or, after `needs_info`, resubmit) identity data; the case becomes `pending`.

    JSON, or multipart/form-data with the same fields (`address` as JSON text) and optional files in
    `documents`: each is sniffed from its bytes (415 `unsupported_media_type` for an unknown type, or
    one that contradicts its declared type or name), at most `VIRTUOZ_KYC_DOCUMENT_MAX_BYTES` (413)
    and `VIRTUOZ_KYC_DOCUMENT_MAX_FILES` of them (422 `too_many_files`).
    """
    session, settings = db_session(request), request.config_dict[SETTINGS]
    documents: list[kyc_documents.StagedDocument] = []
    if body is None:  # a multipart form: the files are staged as they stream in, removed on any refusal
        async def stage(upload: IncomingFile) -> kyc_documents.StagedDocument:
            return await kyc_documents.stage(session, request.config_dict[FILE_STORE], upload,
                                             max_bytes=settings.kyc_document_max_bytes)

        documents, fields = await multipart_files(request, stage, field="documents",
                                                  max_bytes=settings.kyc_document_max_bytes,
                                                  max_files=settings.kyc_document_max_files)
        body = KycSubmitIn.of_form(fields)
    case = await kyc.submit(session, current(request).user_id, kyc.Submission(
        body.first_name, body.last_name, body.date_of_birth, body.country, body.address.model_dump()), documents)
    return KycMineOut.of(case, documents)


@kyc_routes.get("/admin/kyc/queue", access=OFFICERS, query=KycQueueQuery, responses={200: KycQueueOut},
                name="kyc_queue")
async def kyc_queue(request: web.Request, query: KycQueueQuery) -> KycQueueOut:
    """Pending cases, oldest first, with their age against the KYC SLA."""
    settings = request.config_dict[SETTINGS]
    return KycQueueOut.of(await kyc.queue(db_session(request), settings.kyc_sla_hours, query.limit))


@kyc_routes.get("/admin/kyc/{user_id}", access=OFFICERS, responses={200: KycCaseOut}, name="kyc_case",
                errors=KYC_CASE_NOT_FOUND)
async def kyc_case(request: web.Request) -> KycCaseOut:
    """One KYC case, whatever its state, with its documents' metadata."""
    session, user_id = db_session(request), path_uuid(request, "user_id", "kyc_case_not_found")
    return KycCaseOut.of(await kyc.get(session, user_id), await kyc.documents(session, user_id))


@kyc_routes.get("/admin/kyc/{user_id}/documents/{document_id}", access=OFFICERS,
                responses={200: "application/octet-stream"}, name="kyc_document_download",
                errors={404: ("kyc_document_not_found",)})
async def kyc_document_download(request: web.Request) -> web.StreamResponse:
    """A KYC document's exact bytes, as an attachment with its sniffed type (compliance officers and admins)."""
    document = await kyc_documents.get(db_session(request), path_uuid(request, "user_id", "kyc_document_not_found"),
                                       path_uuid(request, "document_id", "kyc_document_not_found"))
    return await stored_file(request, document.id, filename=document.filename, content_type=document.content_type,
                             size=document.size, headers={"X-Content-SHA256": document.sha256})


@kyc_routes.post("/admin/kyc/{user_id}/decision", access=OFFICERS, body=KycDecisionIn, responses={200: KycCaseOut},
                 name="kyc_decide",
                 errors={**KYC_CASE_NOT_FOUND, 403: ("own_kyc_case",), 409: ("kyc_invalid_state",)})
async def kyc_decide(request: web.Request, body: KycDecisionIn) -> KycCaseOut:
    """Approve, reject or ask for more information on a pending case (audited; the user is notified)."""
    session, user_id = db_session(request), path_uuid(request, "user_id", "kyc_case_not_found")
    case = await kyc.decide(session, user_id, body.decision, body.reason, current(request).user_id, body.level)
    return KycCaseOut.of(case, await kyc.documents(session, user_id))


@compliance_routes.post("/compliance/reports", access=OFFICERS, body=ReportIn, responses={202: ReportQueuedOut},
                        name="compliance_report_create",
                        errors={422: ("unknown_jurisdiction", "unknown_report_type", "invalid_period")})
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
                       responses={200: ReportListOut}, name="compliance_report_list",
                       errors={422: ("unknown_jurisdiction", *CURSOR)})
async def compliance_report_list(request: web.Request, query: ReportListQuery) -> ReportListOut:
    """Reports of one jurisdiction, newest first, with state, SHA-256 and row count."""
    page = await reports.search(db_session(request), jurisdiction=_jurisdiction(request), type=query.type,
                                state=query.state, limit=query.limit, cursor=query.cursor)
    return ReportListOut(items=[ReportOut.of(item) for item in page.items], next_cursor=page.next_cursor)


@compliance_routes.get("/compliance/reports/{jurisdiction}/{report_id}/download", access=OFFICERS,
                       query=DownloadQuery, responses={200: "text/csv"}, name="compliance_report_download",
                       errors={404: ("report_not_found",), 409: ("report_not_ready",),
                               422: ("unknown_jurisdiction",)})
async def compliance_report_download(request: web.Request, query: DownloadQuery) -> web.StreamResponse:
    """The report file (`format=csv` or `json`); `X-Content-SHA256` is the hash recorded at generation."""
    report = await reports.get(db_session(request), path_uuid(request, "report_id", "report_not_found"),
                               _jurisdiction(request))
    key = reports.file_of(report, query.format)
    digest = report.sha256 if query.format == "csv" else report.json_sha256
    media = "text/csv; charset=utf-8" if query.format == "csv" else "application/json"
    headers = {"Content-Type": media, "X-Content-SHA256": digest or "",
               "Content-Disposition": f'attachment; filename="{report.jurisdiction}-{report.type}-{report.id}.'
                                      f'{query.format}"'}
    if reports.is_local_path(key):  # written before reports went through the file store
        return web.FileResponse(key, headers=headers)
    # Streamed from the reports store: a year of transactions is not read into memory.
    return await streamed(request, web.StreamResponse(headers=headers), request.config_dict[REPORT_STORE].read(key))


@admin_compliance_routes.get("/admin/compliance/reports", access=roles("admin"), query=AdminReportListQuery,
                             responses={200: ReportListOut}, name="compliance_admin_report_list",
                             errors={422: CURSOR})
async def compliance_admin_report_list(request: web.Request, query: AdminReportListQuery) -> ReportListOut:
    """Every jurisdiction's reports, newest first; filters `jurisdiction`, `type`, `state`."""
    page = await reports.search(db_session(request), jurisdiction=query.jurisdiction, type=query.type,
                                state=query.state, limit=query.limit, cursor=query.cursor)
    return ReportListOut(items=[ReportOut.of(item) for item in page.items], next_cursor=page.next_cursor)


REVIEWERS = roles("admin", "compliance", "support")


def _transfer_id(request: web.Request):
    return path_uuid(request, "tx_id", "transaction_not_found")


@transaction_review_routes.get("/admin/transactions", access=REVIEWERS, query=TransactionQuery,
                               responses={200: TransactionListOut}, name="compliance_transactions",
                               errors={422: ("currency_required", "unknown_currency", "invalid_amount", *CURSOR)})
async def compliance_transactions(request: web.Request, query: TransactionQuery) -> TransactionListOut:
    """Every ledger transfer (deposits, withdrawals, escrow, credits), newest first, with its review."""
    filters = review.Filters(**query.model_dump(exclude={"limit", "cursor"}))
    page = await review.search(db_session(request), filters, limit=query.limit, cursor=query.cursor)
    return TransactionListOut(items=[TransactionOut.of(item) for item in page.items], next_cursor=page.next_cursor)


@transaction_review_routes.get("/admin/transactions/{tx_id}", access=REVIEWERS, responses={200: TransactionOut},
                               name="compliance_transaction", errors=TRANSACTION_NOT_FOUND)
async def compliance_transaction(request: web.Request) -> TransactionOut:
    """One transfer with its postings, business object state and review."""
    return TransactionOut.of(await review.get(db_session(request), _transfer_id(request)))


@transaction_review_routes.post("/admin/transactions/{tx_id}/flag", access=REVIEWERS, body=FlagIn,
                                responses={200: TransactionOut}, name="compliance_transaction_flag",
                                errors={**TRANSACTION_NOT_FOUND, 409: ("already_flagged",)})
async def compliance_transaction_flag(request: web.Request, body: FlagIn) -> TransactionOut:
    """Flag a transfer for compliance review (409 while it is already flagged)."""
    return TransactionOut.of(await review.flag(db_session(request), _transfer_id(request), body.reason,
                                               current(request).user_id))


@transaction_review_routes.post("/admin/transactions/{tx_id}/reconcile", access=OFFICERS,
                                responses={200: ReconcileOut}, name="compliance_transaction_reconcile",
                                errors={**TRANSACTION_NOT_FOUND, 409: ("no_onchain_counterpart", "not_on_chain"),
                                        503: ("chain_not_configured",)})
async def compliance_transaction_reconcile(request: web.Request) -> ReconcileOut:
    """Compare a deposit's or withdrawal's ledger record with the chain: receipt, status, amount, block hash
    (still canonical) and confirmations. Each difference names the field, the ledger's value and the chain's.

    Refusals: an internal transfer (escrow, credits, fees) has no on-chain counterpart (409
    `no_onchain_counterpart`); a withdrawal with no mined transaction (409 `not_on_chain`); a chain this
    server does not follow (503 `chain_not_configured`); unknown id (404 `transaction_not_found`).
    """
    chains = {chain.name: chain for chain in request.config_dict[CHAINS]}
    result = await reconcile.reconcile(db_session(request), _transfer_id(request), chains,
                                       request.config_dict[SETTINGS].chains, actor=current(request).user_id)
    return ReconcileOut.of(result)


@transaction_review_routes.post("/admin/transactions/{tx_id}/resolve", access=OFFICERS, body=ResolveIn,
                                responses={200: TransactionOut}, name="compliance_transaction_resolve",
                                errors={**TRANSACTION_NOT_FOUND, 403: ("own_transaction",),
                                        409: ("not_flagged", "review_already_resolved")})
async def compliance_transaction_resolve(request: web.Request, body: ResolveIn) -> TransactionOut:
    """Resolve a flagged transfer as `cleared` or `reported`; resolving twice is a 409.

    Refusals: own_transaction (403: the transfer posts to the officer's own accounts; another officer
    resolves it), not_flagged / review_already_resolved (409), transaction_not_found (404).
    """
    return TransactionOut.of(await review.resolve(db_session(request), _transfer_id(request), body.resolution,
                                                  body.note, current(request).user_id))


@compliance_routes.post("/compliance/travel-rule", access=AUTHENTICATED, scope="withdrawals:write",
                        body=TravelRuleUpsertIn, responses={201: TravelRuleTransferOut, 200: TravelRuleTransferOut},
                        name="compliance_travel_rule_upsert",
                        errors={403: ("travel_rule_forbidden",),
                                404: ("travel_rule_transfer_not_found", "withdrawal_not_found", "deposit_not_found"),
                                409: ("travel_rule_not_editable", "travel_rule_link_taken",
                                      "travel_rule_external_id_mismatch", "travel_rule_direction_mismatch"),
                                422: ("travel_rule_link_mismatch", "travel_rule_direction_mismatch",
                                      "travel_rule_inbound_not_sent", "unknown_currency", "invalid_amount",
                                      "travel_address_invalid", "travel_address_private")})
async def compliance_travel_rule_upsert(request: web.Request, body: TravelRuleUpsertIn) -> web.StreamResponse:
    """Create (201) or update (200, while a draft not yet sent) a Travel Rule transfer by `external_id` or `id`.

    Compliance officers and operators; a customer only for their own withdrawal (`transfer.withdrawal_id`).
    Missing IVMS101 fields are a 422 naming each one; `"send": true` queues the delivery to the
    beneficiary's VASP. Refusals: `travel_rule_not_editable` (409), `travel_rule_link_taken` (409),
    `travel_rule_link_mismatch` (422), `withdrawal_not_found` (404), `travel_rule_forbidden` (403),
    `travel_address_private` (422: a private, loopback or link-local address, unless its VASP is in
    the configured directory). A customer's answer leaves out the TRP `request_identifier` and
    `callback_url` (they would let anyone speak for the counterparty) and the decision's details.
    """
    principal = current(request)
    session = db_session(request)
    actor = travel_rule.Actor(principal.user_id, principal.roles)
    settings = request.config_dict[SETTINGS]
    transfer, created = await travel_rule.upsert(session, actor, body, expiry_hours=settings.travel_rule_expiry_hours,
                                                 directory=Directory.of(settings))
    out = TravelRuleTransferOut.of(await travel_rule.view(session, transfer), internal=actor.is_staff)
    return json_response(out, status=201 if created else 200)


@compliance_routes.get("/compliance/travel-rule/recent", access=OFFICERS, query=TravelRuleRecentQuery,
                       responses={200: TravelRuleListOut}, name="compliance_travel_rule_recent")
async def compliance_travel_rule_recent(request: web.Request, query: TravelRuleRecentQuery) -> TravelRuleListOut:
    """Recent Travel Rule transfers, newest first; filters `state` and `direction`."""
    session = db_session(request)
    transfers = await travel_rule.recent(session, query.state, query.direction, query.limit)
    return TravelRuleListOut(items=[TravelRuleTransferOut.of(item) for item in await travel_rule.views(session, transfers)])
