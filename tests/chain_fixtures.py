"""A real Anvil chain for the whole session, shared by the e2e and integration chain tests.

Import the fixtures into a test module (``from tests.chain_fixtures import anvil_chain  # noqa: F401``)
rather than from a conftest, so only the modules that need a chain pay for starting one.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from devnet.chains import AnvilChain, compile_usdc
from devnet.processes import free_port

TEST_CHAIN_ID = 31337
# Fast interval mining keeps "wait for the next block" tests well under a second per step.
TEST_BLOCK_TIME = 0.2


@pytest.fixture(scope="session")
def anvil_chain(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AnvilChain]:
    root = tmp_path_factory.mktemp("anvil")
    chain = AnvilChain(
        "ethereum", TEST_CHAIN_ID, free_port(), root / "data", block_time=TEST_BLOCK_TIME, log_dir=root
    ).start()
    yield chain
    chain.stop()


@pytest.fixture(scope="session")
def usdc_cache_dir(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    # pytest's own cache directory survives between runs, so solcjs (seconds) runs only when
    # USDC.sol changes; with the cache plugin off (-p no:cacheprovider) it runs once per session.
    cache = getattr(request.config, "cache", None)
    return cache.mkdir("usdc-artifacts") if cache is not None else tmp_path_factory.mktemp("usdc-artifacts")


@pytest.fixture(scope="session")
def usdc_artifact(usdc_cache_dir: Path) -> dict[str, Any]:
    return compile_usdc(usdc_cache_dir)
