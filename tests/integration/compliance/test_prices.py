"""Prices: the seeded devnet prices, newer prices superseding older ones, the operator command."""

from __future__ import annotations

import argparse
import asyncio
import random
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from compliance import prices
from compliance.cli import run_add_price
from core.db import unit_of_work
from core.errors import Conflict, InvalidInput


async def test_seeded_prices_convert_with_decimal_and_name_the_price(factory) -> None:
    async with factory() as session:
        conversion = await prices.convert(session, Decimal("1.5"), "ETH", "CAD", datetime(2001, 5, 1, tzinfo=UTC))
    assert (conversion.value, conversion.quote, conversion.price) == (Decimal("6165.00"), "CAD", Decimal(4110))
    assert conversion.price_as_of == datetime(2000, 1, 1, tzinfo=UTC)
    assert "seed" in conversion.price_source
    async with factory() as session:
        for base in ("ETH", "POL", "USDC", "USD"):
            for quote in ("USD", "EUR", "CAD"):
                assert (await prices.price_at(session, base, quote, datetime(2001, 1, 1, tzinfo=UTC))).price > 0
        with pytest.raises(prices.PriceMissing):
            await prices.price_at(session, "ETH", "JPY", datetime(2001, 1, 1, tzinfo=UTC))
        with pytest.raises(prices.PriceMissing):  # nothing before the seed
            await prices.price_at(session, "ETH", "USD", datetime(1999, 1, 1, tzinfo=UTC))


async def test_a_newer_price_supersedes_from_its_moment_only(factory) -> None:
    base = f"T{random.randrange(10**6)}"
    moment = datetime(2010, 1, 1, tzinfo=UTC)
    async with unit_of_work(factory) as session:
        await prices.add_price(session, base, "USD", Decimal(2), moment, "test")
        await prices.add_price(session, base, "USD", Decimal("2.5"), moment + timedelta(days=1), "test")
    async with factory() as session:
        before = await prices.convert(session, Decimal(3), base, "USD", moment + timedelta(hours=23))
        after = await prices.convert(session, Decimal(3), base, "USD", moment + timedelta(days=2))
        assert (before.value, after.value) == (Decimal("6.00"), Decimal("7.50"))
        with pytest.raises(Conflict):
            await prices.add_price(session, base, "USD", Decimal(9), moment, "a correction is a new row")
        with pytest.raises(InvalidInput):
            await prices.add_price(session, base, "USD", Decimal(0), moment + timedelta(days=5), "test")


async def test_operator_command_adds_a_price(settings, factory, capsys) -> None:
    base = f"C{random.randrange(10**6)}"
    args = argparse.Namespace(base=base.lower(), quote="eur", price="1234.5", as_of="2011-02-03T00:00:00Z",
                              source="operator: test")
    assert await asyncio.to_thread(run_add_price, settings, args) == 0
    assert f"1 {base} = 1234.5 EUR" in capsys.readouterr().out
    async with factory() as session:
        price = await prices.price_at(session, base, "EUR", datetime(2011, 3, 1, tzinfo=UTC))
    assert (price.price, price.source) == (Decimal("1234.5"), "operator: test")
    assert await asyncio.to_thread(run_add_price, settings, args) == 1  # the same moment again: refused
    bad = argparse.Namespace(base="ETH", quote="USD", price="abc", as_of=None, source="x")
    assert await asyncio.to_thread(run_add_price, settings, bad) == 2
    naive = argparse.Namespace(base="ETH", quote="USD", price="1", as_of="2011-02-03T00:00:00", source="x")
    assert await asyncio.to_thread(run_add_price, settings, naive) == 2
