"""File storage: sharded paths, previewed through the operator route (no traversal, staff only)."""

from __future__ import annotations


async def test_shard_path_preview(client, login_as):
    operator, customer = await login_as(client, "operator"), await login_as(client)
    response = await client.post("/api/v1/platform/storage/shard-path", json={"key": "abc"},
                                 headers=operator.headers)
    body = await response.json()
    assert response.status == 200 and body["key"] == "abc" and body["path"].endswith("/abc")
    for key in ("../etc/passwd", "/abs", "a\u0000b"):
        refused = await client.post("/api/v1/platform/storage/shard-path", json={"key": key},
                                    headers=operator.headers)
        assert refused.status == 422
    assert (await client.post("/api/v1/platform/storage/shard-path", json={"key": "abc"},
                              headers=customer.headers)).status == 403
