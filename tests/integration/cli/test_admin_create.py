"""`virtuoz admin create EMAIL`: the first admin of a platform, made by the real console entry point
(a subprocess, ``python -m cli``) against this worker's test database, then used through the API."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from sqlalchemy import select

from core import audit
from core.db import create_engine, session_factory
from identity.models import User
from tests.conftest import REPO_ROOT
from tests.factories import PASSWORD, bearer, unique_email

API = "/api/v1"


def virtuoz(database_url: str, data_dir: Path, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "VIRTUOZ_ENV": "test", "VIRTUOZ_DATABASE_URL": database_url,
           "VIRTUOZ_DATA_DIR": str(data_dir), "VIRTUOZ_LOG_JSON": "false"}
    return subprocess.run([sys.executable, "-m", "cli", *args], cwd=REPO_ROOT, env=env, input=stdin,
                          capture_output=True, text=True, timeout=120, check=False)


async def stored(database_url: str, email: str) -> tuple[User | None, list[audit.AuditEvent]]:
    engine = create_engine(database_url)
    try:
        async with session_factory(engine)() as session:
            user = await session.scalar(select(User).where(User.email == email))
            events = await audit.events_of(session, "user", user.id) if user else []
            return user, events
    finally:
        await engine.dispose()


async def test_admin_create_makes_an_active_verified_admin_audited_as_the_cli(client, database_url, tmp_path):
    email = unique_email("first-admin")
    password_file = tmp_path / "password"
    password_file.write_text(PASSWORD + "\n")  # as `echo` writes it: the newline is not part of it
    done = virtuoz(database_url, tmp_path, "admin", "create", email.upper(), "--password-file", str(password_file))
    assert done.returncode == 0, done.stderr
    assert email in done.stdout and PASSWORD not in done.stdout + done.stderr

    user, events = await stored(database_url, email)
    assert user is not None
    assert (user.roles, user.status) == (["admin"], "active")
    assert user.email_verified_at is not None  # the operator who ran the command vouches for the address
    assert [(event.type, event.actor) for event in events] == [("user.registered", "cli"),
                                                               ("user.email_verified", "cli")]
    assert events[0].data == {"email": email, "roles": ["admin"], "via": "cli"}

    # The admin logs in with that password and uses the back office.
    headers = await bearer(client, email, PASSWORD)
    response = await client.get(f"{API}/admin/users", params={"email": email}, headers=headers)
    assert response.status == 200, await response.text()


async def test_admin_create_reads_the_password_from_stdin_and_refuses_a_taken_or_weak_one(database_url, tmp_path):
    email = unique_email("piped-admin")
    done = virtuoz(database_url, tmp_path, "admin", "create", email, stdin=PASSWORD + "\n")
    assert done.returncode == 0, done.stderr
    assert (await stored(database_url, email))[0] is not None

    again = virtuoz(database_url, tmp_path, "admin", "create", email, stdin=PASSWORD + "\n")
    assert again.returncode == 1 and "email_taken" in again.stderr

    weak = virtuoz(database_url, tmp_path, "admin", "create", unique_email("weak-admin"), stdin="password\n")
    assert weak.returncode == 1 and "weak_password" in weak.stderr

    missing = virtuoz(database_url, tmp_path, "admin", "create", unique_email("nofile-admin"),
                      "--password-file", str(tmp_path / "nope"))
    assert missing.returncode == 1 and "cannot read" in missing.stderr
    events = (await stored(database_url, email))[1]
    assert [event.type for event in events] == ["user.registered", "user.email_verified"]  # nothing more
