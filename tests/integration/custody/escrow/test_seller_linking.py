"""Who becomes an escrow's seller: only an account that proved it owns the contract's seller email.

Registering an address is not owning it: anyone could sign up as sales@supplier.com. A contract
addressed to an email waits until an account with that email has verified it; the verification
links every waiting contract, audited in its transaction.
"""

from __future__ import annotations

import pytest

from tests.factories import emailed_verification_token, login_as, publish_email_templates, register, unique_email

pytestmark = pytest.mark.usefixtures("ledger_is_consistent")

API = "/api/v1"


async def detail(client, user, escrow_id: str) -> dict:
    response = await client.get(f"{API}/escrow/contracts/{escrow_id}", headers=user.headers)
    assert response.status == 200, await response.text()
    return await response.json()


async def history_types(client, user, escrow_id: str) -> list[tuple[str, str | None]]:
    response = await client.get(f"{API}/escrow/contracts/{escrow_id}/history", headers=user.headers)
    return [(item["type"], item["actor"]) for item in (await response.json())["items"]]


async def test_unverified_account_is_not_linked_as_seller(escrow_client, database_url, new_escrow, act):
    buyer = await login_as(escrow_client, database_url)
    squatter = await login_as(escrow_client, database_url, verified=False)  # signed up as someone else's address
    escrow = await new_escrow(escrow_client, buyer, seller=squatter)
    assert escrow["seller"] is None and escrow["seller_email"] == squatter.email
    assert (await detail(escrow_client, buyer, escrow["id"]))["seller"] is None

    # The contract is not theirs: not listed, not readable, nothing to dispute.
    listed = await (await escrow_client.get(f"{API}/escrow/contracts?role=seller", headers=squatter.headers)).json()
    assert listed["items"] == []
    hidden = await escrow_client.get(f"{API}/escrow/contracts/{escrow['id']}", headers=squatter.headers)
    assert hidden.status == 404
    await act(escrow_client, buyer, escrow["id"], "fund")
    assert (await act(escrow_client, squatter, escrow["id"], "dispute", {"reason": "mine"}, expect=404))[
        "error"]["code"] == "escrow_not_found"
    assert (await act(escrow_client, buyer, escrow["id"], "release", expect=409))["error"]["code"] == "seller_required"
    assert [kind for kind, _ in await history_types(escrow_client, buyer, escrow["id"])] == ["escrow.created",
                                                                                          "escrow.funded"]


async def test_verification_links_pending_escrows(escrow_client, database_url, new_escrow, act):
    await publish_email_templates(escrow_client)
    buyer = await login_as(escrow_client, database_url)
    email = unique_email("supplier")
    before_sign_up = await new_escrow(escrow_client, buyer, seller_email=email, amount="10.00")
    await act(escrow_client, buyer, before_sign_up["id"], "fund")
    seller = await register(escrow_client, email=email, display_name="Supplier", verified=False)
    after_sign_up = await new_escrow(escrow_client, buyer, seller_email=email, amount="20.00")
    assert (await detail(escrow_client, buyer, before_sign_up["id"]))["seller"] is None
    assert (await detail(escrow_client, buyer, after_sign_up["id"]))["seller"] is None

    token = await emailed_verification_token(escrow_client, seller["id"])
    verified = await escrow_client.post(f"{API}/auth/email/verify", json={"token": token})
    assert verified.status == 200, await verified.text()

    for escrow in (before_sign_up, after_sign_up):
        assert (await detail(escrow_client, buyer, escrow["id"]))["seller"] == {"id": seller["id"], "email": email}
        assert ("escrow.seller_linked", seller["id"]) in await history_types(escrow_client, buyer, escrow["id"])
    released = await act(escrow_client, buyer, before_sign_up["id"], "release")
    assert released["state"] == "released" and released["seller"]["id"] == seller["id"]


async def test_the_create_answer_never_shows_the_seller_account(escrow_client, database_url, new_escrow):
    buyer = await login_as(escrow_client, database_url)
    verified_seller = await login_as(escrow_client, database_url)
    escrow = await new_escrow(escrow_client, buyer, seller=verified_seller)
    # Linked at once (the account is verified), but the answer is the same as for a stranger's email.
    assert escrow["seller"] is None and escrow["seller_email"] == verified_seller.email
    assert str(verified_seller.user_id) not in str(escrow)
    assert (await detail(escrow_client, buyer, escrow["id"]))["seller"]["id"] == str(verified_seller.user_id)
