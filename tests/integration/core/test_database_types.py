from __future__ import annotations

from sqlalchemy import Column, MetaData, Table, select

from core.db import Money, create_engine

metadata = MetaData()
amounts = Table("test_money_amounts", metadata, Column("amount", Money, nullable=False))


async def test_numeric_78_0_holds_the_largest_uint256(database_url):
    engine = create_engine(database_url)
    async with engine.begin() as connection:
        await connection.run_sync(metadata.create_all)
        await connection.execute(amounts.delete())
        await connection.execute(amounts.insert(), [{"amount": 2**256 - 1}, {"amount": 10**18}])
        stored = sorted((await connection.execute(select(amounts.c.amount))).scalars())
        await connection.run_sync(metadata.drop_all)
    await engine.dispose()
    assert stored == [10**18, 2**256 - 1]
    assert all(type(value) is int for value in stored)
