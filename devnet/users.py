"""Demo accounts for the devnet: one per role, passwords generated once and kept in the data dir."""

from __future__ import annotations

import asyncio
import json
import os
import secrets
from pathlib import Path

from core.db import create_engine, session_factory, unit_of_work
from custody import ledger, onboarding
from identity.models import ROLES
from identity.service import ensure_user

DOMAIN = "devnet.virtuoz.dev"


def _credentials(path: Path) -> list[dict[str, str]]:
    if path.exists():
        return json.loads(path.read_text())
    users = [{"email": f"{role}@{DOMAIN}", "password": secrets.token_urlsafe(15), "role": role} for role in ROLES]
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)  # passwords: owner only
    with os.fdopen(descriptor, "w") as handle:
        json.dump(users, handle, indent=2)
    return users


async def _ensure(database_url: str, users: list[dict[str, str]], sandbox_credit: str | None) -> None:
    engine = create_engine(database_url)
    try:
        async with unit_of_work(session_factory(engine)) as session:
            for user in users:
                account = await ensure_user(session, user["email"], user["password"], f"Demo {user['role']}",
                                            [user["role"]])
                # The devnet owns its demo domain: they are verified, so they can be sellers and withdraw
                # (accounts of an older devnet data directory too; once, audited).
                await onboarding.mark_email_verified(session, account, actor="devnet")
                if sandbox_credit:  # once per user and currency: a restart credits nothing more
                    await ledger.sandbox_credit(session, account.id, sandbox_credit)
    finally:
        await engine.dispose()


def ensure_demo_users(database_url: str, data_dir: Path, sandbox_credit: str | None = None) -> list[dict[str, str]]:
    users = _credentials(data_dir / "devnet-users.json")
    asyncio.run(_ensure(database_url, users, sandbox_credit))
    return users
