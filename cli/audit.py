"""`virtuoz audit verify`: check every hash chain, from the database or from an export file."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections import defaultdict
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from sqlalchemy import select

from core import audit
from core.db import create_engine, session_factory
from core.settings import Settings

PROGRESS_EVERY = 500


def _progress(done: int, total: int, *, final: bool = False) -> None:
    if sys.stderr.isatty() or final or done % PROGRESS_EVERY == 0:
        end = "\n" if final else "\r"
        print(f"verified {done}/{total} aggregates", end=end, file=sys.stderr, flush=True)


def verify_chains(chains: dict[tuple[str, str], list[dict[str, Any]]]) -> list[str]:
    problems = []
    for done, ((aggregate_type, aggregate_id), events) in enumerate(sorted(chains.items()), start=1):
        events.sort(key=lambda event: event["seq"])
        problems += [f"{aggregate_type}/{aggregate_id}: {problem}" for problem in audit.verify_chain(events)]
        _progress(done, len(chains), final=done == len(chains))
    return problems


def _group(events: Iterable[dict[str, Any]], aggregate_type: str | None) -> dict[tuple[str, str], list[dict[str, Any]]]:
    chains: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for event in events:
        if aggregate_type is None or event["aggregate_type"] == aggregate_type:
            chains[(event["aggregate_type"], event["aggregate_id"])].append(event)
    return chains


def _read_export(path: Path) -> list[dict[str, Any]]:
    text = path.read_text()
    if text.lstrip().startswith("{"):
        return json.loads(text)["items"]
    return [json.loads(line) for line in text.splitlines() if line.strip()]


async def _read_database(database_url: str, aggregate_type: str | None) -> list[dict[str, Any]]:
    engine = create_engine(database_url)
    try:
        async with session_factory(engine)() as session:
            query = select(audit.AuditEvent).order_by(audit.AuditEvent.id)
            if aggregate_type:
                query = query.where(audit.AuditEvent.aggregate_type == aggregate_type)
            stream = await session.stream_scalars(query.execution_options(yield_per=1000))
            return [audit.as_dict(event) async for event in stream]
    finally:
        await engine.dispose()


def verify(settings: Settings, args: argparse.Namespace) -> int:
    if args.file:
        events = _read_export(Path(args.file))
    else:
        events = asyncio.run(_read_database(settings.require_database_url(), args.aggregate_type))
    chains = _group(events, args.aggregate_type)
    problems = verify_chains(chains)
    for problem in problems:
        print(problem)
    if problems:
        print(f"audit chains BROKEN: {len(problems)} problem(s)", file=sys.stderr)
        return 1
    print(f"audit chains OK ({len(chains)} aggregates, {sum(map(len, chains.values()))} events)")
    return 0


def add_commands(subparsers: Any) -> None:
    parser = subparsers.add_parser("audit", help="audit event store tools")
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    check = actions.add_parser("verify", help="verify every hash chain (database, or --file export)")
    check.add_argument("--aggregate-type")
    check.add_argument("--file", help="an export: JSON {'items': [...]} or NDJSON")
    check.set_defaults(run=verify, process="audit")
