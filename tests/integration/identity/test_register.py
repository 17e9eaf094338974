"""Registration: the returned user, email normalization, the password policy, argon2id hashes."""

from __future__ import annotations

import uuid

import pytest

from tests.factories import PASSWORD, register, unique_email
from tests.integration.identity.conftest import API, error_code, fetch_one


async def test_register_returns_the_customer_without_any_secret(client):
    email = unique_email()
    response = await client.post(f"{API}/auth/register",
                                 json={"email": email, "password": PASSWORD, "display_name": "  Ada Lovelace "})
    body = await response.json()
    assert response.status == 201, body
    assert set(body) == {"id", "email", "display_name", "roles", "created_at"}
    uuid.UUID(body["id"])
    assert body["email"] == email
    assert body["display_name"] == "Ada Lovelace"
    assert body["roles"] == ["customer"]
    assert body["created_at"]
    assert PASSWORD not in await response.text()


async def test_the_seed_example_password_is_accepted(client):
    # YourStrongPassw0rd! with a user@example.com-like address (a unique local part that is not in it)
    body = await register(client, email=f"user{uuid.uuid4().hex[:8]}@example.com", password="YourStrongPassw0rd!")
    assert body["roles"] == ["customer"]


async def test_email_is_trimmed_and_lowercased(client):
    local = f"Mixed.Case-{uuid.uuid4().hex[:8]}"
    body = await register(client, email=f"  {local}@Example.COM ")
    assert body["email"] == f"{local.lower()}@example.com"


async def test_duplicate_email_in_any_case_is_409_email_taken(client):
    email = unique_email()
    await register(client, email=email)
    for variant in (email, email.upper(), f" {email.title()} "):
        response = await client.post(f"{API}/auth/register",
                                     json={"email": variant, "password": PASSWORD, "display_name": "Again"})
        assert response.status == 409, variant
        assert await error_code(response) == "email_taken"


@pytest.mark.parametrize(
    ("password", "reason"),
    [
        ("Short-pw1!", "at least 12 characters"),
        ("x" * 129, "at most 128 characters"),
        ("123qweasdzxc", "common passwords"),  # a 12-character entry of the bundled list
        ("123QWEASDzxc", "common passwords"),  # compared case-insensitively
    ],
)
async def test_weak_passwords_are_422_weak_password_with_a_reason(client, password, reason):
    response = await client.post(f"{API}/auth/register",
                                 json={"email": unique_email(), "password": password, "display_name": "Weak"})
    body = await response.json()
    assert response.status == 422, body
    assert body["error"]["code"] == "weak_password"
    assert reason in body["error"]["details"]["reason"]


async def test_password_containing_the_email_local_part_is_refused(client):
    local = f"zed{uuid.uuid4().hex[:6]}"
    response = await client.post(f"{API}/auth/register", json={
        "email": f"{local}@example.com", "password": f"My-{local.upper()}-secret!", "display_name": "Zed"})
    body = await response.json()
    assert response.status == 422, body
    assert body["error"]["code"] == "weak_password"
    assert "email" in body["error"]["details"]["reason"]


async def test_a_local_part_shorter_than_four_characters_is_not_checked(client):
    email = f"bob@{uuid.uuid4().hex[:10]}.example.com"
    await register(client, email=email, password="bob-has-a-long-passphrase")


async def test_password_of_exactly_128_characters_is_accepted(client):
    await register(client, password="Aa1!" * 32)


async def test_password_hash_is_argon2id_with_owasp_parameters(client, database_url):
    user = await register(client)
    row = await fetch_one(database_url, "SELECT password_hash FROM users WHERE id = :id", id=uuid.UUID(user["id"]))
    assert row.password_hash.startswith("$argon2id$v=19$m=19456,t=2,p=1$")
    assert PASSWORD not in row.password_hash


async def test_blank_display_name_is_refused(client):
    response = await client.post(f"{API}/auth/register",
                                 json={"email": unique_email(), "password": PASSWORD, "display_name": "   "})
    assert response.status == 422
    assert await error_code(response) == "validation_error"
