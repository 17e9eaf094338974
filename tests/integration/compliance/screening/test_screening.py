"""Sanctions lists loaded into the real database, and the screening checks others call."""

from __future__ import annotations

import argparse
import asyncio
import secrets
from pathlib import Path

from sqlalchemy import select

from compliance.screening import service as screening
from compliance.cli import run_load_sanctions
from core.audit import AuditEvent
from core.db import unit_of_work

FIXTURES = Path(__file__).parent / "fixtures"
LAZARUS = "0x098B716B8Aaf21512996dC57EB0615e2383E2f96"


async def cli(settings, args: argparse.Namespace) -> int:
    """The command as the console script runs it (its own event loop, hence its own thread here)."""
    return await asyncio.to_thread(run_load_sanctions, settings, args)


def evm_address() -> str:
    return "0x" + secrets.token_hex(20).upper()


async def test_ofac_advanced_xml_is_loaded_and_screened(factory) -> None:
    async with unit_of_work(factory) as session:
        loaded = await screening.load(session, (FIXTURES / "sdn_advanced_sample.xml").read_bytes(),
                                      "sdn_advanced.xml")
    assert (loaded.source, loaded.addresses, loaded.names) == ("ofac_sdn", 3, 3)
    async with factory() as session:
        for spelling in (LAZARUS, LAZARUS.lower(), LAZARUS.upper().replace("0X", "0x")):
            hit = await screening.screen_address(session, spelling)
            assert hit is not None
            assert (hit.matched, hit.entity_name, hit.source, hit.list_uid) == (
                LAZARUS.lower(), "LAZARUS GROUP", "ofac_sdn", "23254")
        assert await screening.screen_address(session, "bc1qsampleaddressxxxxxxxxxxxxxxxxxxxxxxxx0") is not None
        # Not an EVM address: compared as written.
        assert await screening.screen_address(session, "BC1QSAMPLEADDRESSXXXXXXXXXXXXXXXXXXXXXXXX0") is None
        assert await screening.screen_address(session, evm_address()) is None
        hit = await screening.screen_name(session, "Ivan Sergeyevich PETROV")
        assert hit is not None and (hit.matched, hit.list_uid) == ("PETROV Ivan Sergeyevich", "99901")
        assert (await screening.screen_name(session, "appleworm")).entity_name == "APPLEWORM"
        assert await screening.screen_name(session, "Ivan Petrov") is None


async def test_plain_list_loads_once_and_each_load_is_audited(factory, tmp_path) -> None:
    listed = [evm_address(), evm_address()]
    content = ("# test list\n" + "\n".join(f"{address}  # entry" for address in listed) + "\n").encode()
    name = f"list-{secrets.token_hex(4)}.txt"
    async with unit_of_work(factory) as session:
        first = await screening.load(session, content, name)
    async with unit_of_work(factory) as session:
        again = await screening.load(session, content, name)
    assert (first.source, first.addresses, first.added_addresses) == (f"list:{name}", 2, 2)
    assert (again.addresses, again.added_addresses) == (2, 0)  # nothing is added twice, nothing removed
    async with factory() as session:
        for address in listed:
            hit = await screening.screen_address(session, address)
            assert hit is not None and hit.matched == address.lower() and hit.source == f"list:{name}"
        events = (await session.scalars(select(AuditEvent).where(
            AuditEvent.aggregate_type == "sanctions_list", AuditEvent.aggregate_id == f"list:{name}")
            .order_by(AuditEvent.seq))).all()
    assert [event.data["added_addresses"] for event in events] == [2, 0]
    assert events[0].data["sha256"] == first.sha256


async def test_cli_loads_a_file_and_refuses_a_bad_one(settings, factory, tmp_path, capsys) -> None:
    good = tmp_path / f"cli-{secrets.token_hex(4)}.txt"
    address = evm_address()
    good.write_text(f"{address}\n")
    assert await cli(settings, argparse.Namespace(file=good)) == 0
    assert "1 addresses (1 new)" in capsys.readouterr().out
    async with factory() as session:
        assert await screening.screen_address(session, address.lower()) is not None

    bad = tmp_path / "bad.txt"
    bad.write_text(f"{evm_address()}\nnot-an address\n")
    assert await cli(settings, argparse.Namespace(file=bad)) == 1
    assert "line 2" in capsys.readouterr().out
    assert await cli(settings, argparse.Namespace(file=tmp_path / "missing.txt")) == 2
