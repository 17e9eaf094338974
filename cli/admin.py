"""`virtuoz admin create EMAIL`: the first admins of a platform (identity.bootstrap).

The password is asked for twice on a terminal; a script pipes it on stdin or names a file with
``--password-file`` (its first line; the newline `echo` adds is not part of it). It never comes
from an argument: arguments show in `ps` and in shell history.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import sys
from pathlib import Path
from typing import Any

from core.db import create_engine, session_factory, unit_of_work
from core.errors import AppError
from core.settings import Settings
from identity.bootstrap import create_admin


class _Refused(Exception):
    """Why the command cannot go on, for the operator (stderr, exit 1)."""


def _first_line(text: str) -> str:
    return text.splitlines()[0] if text else ""


def read_password(password_file: Path | None) -> str:
    if password_file is not None:
        try:
            password = _first_line(password_file.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError) as error:
            raise _Refused(f"cannot read {password_file}: {getattr(error, 'strerror', None) or error}") from None
    elif sys.stdin.isatty():
        password = getpass.getpass("Password: ")
        if getpass.getpass("Password (again): ") != password:
            raise _Refused("the passwords differ")
    else:
        password = _first_line(sys.stdin.read())
    if not password:
        raise _Refused("the password is empty")
    return password


async def _create(database_url: str, email: str, password: str, display_name: str) -> tuple[str, str]:
    engine = create_engine(database_url)
    try:
        async with unit_of_work(session_factory(engine)) as session:
            user = await create_admin(session, email, password, display_name)
            return str(user.id), user.email
    finally:
        await engine.dispose()


def create(settings: Settings, args: argparse.Namespace) -> int:
    try:
        password = read_password(args.password_file)
        user_id, email = asyncio.run(_create(settings.require_database_url(), args.email, password,
                                             args.display_name))
    except _Refused as refused:
        return _refuse(str(refused))
    except AppError as error:
        reason = f" ({error.details['reason']})" if "reason" in error.details else ""
        return _refuse(f"{error.code}: {error.message}{reason}")
    print(f"admin created: {email} (id {user_id}); active, email verified")
    return 0


def add_commands(subparsers: Any) -> None:
    """Register `admin create` on the `virtuoz` sub-command parsers."""
    admin = subparsers.add_parser("admin", help="platform administrators (the first admin of a platform)")
    actions = admin.add_subparsers(dest="admin_command", required=True, metavar="ACTION")
    create_parser = actions.add_parser("create", help="create an active admin with a verified email")
    create_parser.add_argument("email", metavar="EMAIL")
    create_parser.add_argument("--password-file", type=Path, metavar="PATH",
                               help="read the password from the first line of this file (default: ask, or stdin)")
    create_parser.add_argument("--display-name", default="Administrator")
    create_parser.set_defaults(run=create, process="admin")


def _refuse(message: str) -> int:
    print(f"virtuoz admin: {message}", file=sys.stderr)
    return 1
