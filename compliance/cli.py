"""Operator commands of the compliance domain.

``virtuoz compliance load-sanctions FILE``: add a sanctions list to the screening store. FILE is
OFAC's SDN advanced XML (sdn_advanced.xml) or a plain list, one address per line with ``#``
comments. Loading only adds entries; it prints what the file held and what was new.

``virtuoz compliance add-price BASE QUOTE PRICE [--as-of RFC3339] [--source TEXT]``: record a
price (``ETH USD 3150.25``); conversions at or after ``as_of`` (default: now) use it.
"""

from __future__ import annotations

import argparse
import asyncio
from datetime import datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path

from compliance import prices
from compliance.screening import service as screening
from core.db import create_engine, session_factory, unit_of_work
from core.errors import AppError
from core.settings import Settings
from core.time import utcnow


def add_commands(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    compliance = subparsers.add_parser("compliance", help="compliance operations (sanctions lists)")
    commands = compliance.add_subparsers(dest="compliance_command", required=True, metavar="COMMAND")
    load = commands.add_parser("load-sanctions", help="load OFAC SDN advanced XML or a one-address-per-line list")
    load.add_argument("file", type=Path)
    load.set_defaults(run=run_load_sanctions, process="compliance")
    price = commands.add_parser("add-price", help="record the price of BASE in QUOTE from --as-of (default now)")
    price.add_argument("base")
    price.add_argument("quote")
    price.add_argument("price")
    price.add_argument("--as-of", dest="as_of")
    price.add_argument("--source", default="operator")
    price.set_defaults(run=run_add_price, process="compliance")


def run_load_sanctions(settings: Settings, args: argparse.Namespace) -> int:
    try:
        content = args.file.read_bytes()
    except OSError as error:
        print(f"virtuoz compliance: cannot read {args.file}: {error.strerror}")
        return 2
    try:
        result = asyncio.run(load_sanctions(settings.require_database_url(), content, args.file.name))
    except AppError as error:
        print(f"virtuoz compliance: {error.message}")
        return 1
    print(f"{result.source}: {result.addresses} addresses ({result.added_addresses} new), "
          f"{result.names} names ({result.added_names} new); sha256 {result.sha256}")
    return 0


async def load_sanctions(database_url: str, content: bytes, filename: str) -> screening.LoadResult:
    engine = create_engine(database_url, pool_size=1)
    try:
        async with unit_of_work(session_factory(engine)) as session:
            return await screening.load(session, content, filename, actor="cli")
    finally:
        await engine.dispose()


def run_add_price(settings: Settings, args: argparse.Namespace) -> int:
    try:
        value = Decimal(args.price)
        moment = datetime.fromisoformat(args.as_of) if args.as_of else utcnow()
    except (InvalidOperation, ValueError):
        print("virtuoz compliance: PRICE is a decimal and --as-of an RFC 3339 time")
        return 2
    if moment.tzinfo is None or not value.is_finite():
        print("virtuoz compliance: --as-of needs a time zone (e.g. 2026-11-26T00:00:00Z) and PRICE must be finite")
        return 2
    try:
        asyncio.run(add_price(settings.require_database_url(), args.base.upper(), args.quote.upper(), value, moment,
                              args.source))
    except AppError as error:
        print(f"virtuoz compliance: {error.message}")
        return 1
    print(f"1 {args.base.upper()} = {value} {args.quote.upper()} from {moment.isoformat()}")
    return 0


async def add_price(database_url: str, base: str, quote: str, value: Decimal, moment: datetime, source: str) -> None:
    engine = create_engine(database_url, pool_size=1)
    try:
        async with unit_of_work(session_factory(engine)) as session:
            await prices.add_price(session, base, quote, value, moment, source)
    finally:
        await engine.dispose()
