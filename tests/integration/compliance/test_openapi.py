"""The compliance routes document themselves: the OpenAPI document stays valid 3.1 with them mounted."""

from __future__ import annotations

from openapi_spec_validator import validate


async def test_openapi_with_compliance_routes_is_valid_3_1(client) -> None:
    document = await (await client.get("/api/v1/openapi.json")).json()
    validate(document)
    paths = document["paths"]
    assert {"/api/v1/me/kyc", "/api/v1/admin/kyc/queue", "/api/v1/admin/kyc/{user_id}/decision",
            "/api/v1/compliance/reports", "/api/v1/compliance/reports/{jurisdiction}",
            "/api/v1/compliance/reports/{jurisdiction}/{report_id}/download",
            "/api/v1/admin/compliance/reports", "/api/v1/admin/transactions", "/api/v1/admin/transactions/{tx_id}",
            "/api/v1/admin/transactions/{tx_id}/flag", "/api/v1/admin/transactions/{tx_id}/resolve"} <= set(paths)
    assert "202" in paths["/api/v1/compliance/reports"]["post"]["responses"]
