"""The compliance routes document themselves (the whole document's validity: tests/unit/api/test_openapi_contract.py)."""

from __future__ import annotations


async def test_openapi_documents_the_compliance_routes(client) -> None:
    document = await (await client.get("/api/v1/openapi.json")).json()
    paths = document["paths"]
    assert {"/api/v1/me/kyc", "/api/v1/admin/kyc/queue", "/api/v1/admin/kyc/{user_id}/decision",
            "/api/v1/compliance/reports", "/api/v1/compliance/reports/{jurisdiction}",
            "/api/v1/compliance/reports/{jurisdiction}/{report_id}/download",
            "/api/v1/admin/compliance/reports", "/api/v1/admin/transactions", "/api/v1/admin/transactions/{tx_id}",
            "/api/v1/admin/transactions/{tx_id}/flag", "/api/v1/admin/transactions/{tx_id}/resolve"} <= set(paths)
    assert "202" in paths["/api/v1/compliance/reports"]["post"]["responses"]
