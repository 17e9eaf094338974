"""The migrations build the tables the models describe: Alembic's autogenerate, run against the test
database that ``virtuoz migrate`` (``core.migrate.upgrade``) built, finds nothing to add or change.

A model changed without its migration (or the reverse) fails here, not on a production deploy. The few
differences older than this test are listed by name: each one is a known gap, never a new one.
"""

from __future__ import annotations

from typing import Any

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from core.db import Base, create_engine

# Differences that predate this test (an index or constraint only the migration has, or named otherwise).
KNOWN = {
    ("remove_index", "escrow_contracts", "ix_escrow_contracts_created"),
    ("remove_fk", "escrow_contracts", "fk_escrow_contracts_currency_currencies"),
    ("remove_index", "idempotency_records", "ix_idempotency_records_expires_at"),
    # The model names it "direction_request", which the naming convention keeps as it is.
    ("remove_constraint", "travel_rule_transfers", "uq_travel_rule_transfers_direction_request"),
    ("add_constraint", "travel_rule_transfers", "direction_request"),
}


def describe(difference: Any) -> tuple[str, str, str]:
    """(operation, table, what): a name, or the columns of an unnamed constraint."""
    if isinstance(difference, list):  # a column's modifications: [("modify_type", schema, table, column, …)]
        operation, _, table, column = difference[0][:4]
        return operation, table, column
    operation, element = difference[0], difference[1]
    if operation in ("add_table", "remove_table"):
        return operation, element.name, element.name
    if operation in ("add_column", "remove_column"):
        return operation, difference[2], difference[3].name
    table = element.table.name
    name = element.name or ",".join(column.name for column in element.columns)
    return operation, table, str(name)


async def test_every_table_is_as_its_model_says(database_url: str) -> None:
    engine = create_engine(database_url, pool_size=1)
    try:
        async with engine.connect() as connection:
            differences = await connection.run_sync(lambda sync: compare_metadata(
                MigrationContext.configure(sync, opts={"compare_type": True}), Base.metadata))
    finally:
        await engine.dispose()
    found = {describe(difference) for difference in differences}
    # Tables a test makes for itself (tests/integration/core/test_database_types.py) are not the schema's.
    found = {item for item in found if not (item[0] == "remove_table" and item[1].startswith("test_"))}
    assert found - KNOWN == set(), sorted(found - KNOWN)
