"""Real servers for the whole suite, started once per pytest worker and torn down after.

Each xdist worker gets its own PostgreSQL cluster and Redis server on free ports (LIBRARIES.md:
session fixtures run once per worker), so workers never see each other's rows or queues.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from cli import registry
from core.migrate import upgrade
from core.settings import Settings
from devnet.processes import free_port
from devnet.servers import EmbeddedPostgres, EmbeddedRedis

# The process wiring every real process does at start: actors, models and plug-ins of every domain.
registry.load()

REPO_ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def servers_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("servers")


@pytest.fixture(scope="session")
def postgres(servers_dir: Path) -> Iterator[EmbeddedPostgres]:
    server = EmbeddedPostgres(servers_dir / "pg", free_port(), log_dir=servers_dir).start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def database_url(postgres: EmbeddedPostgres) -> str:
    postgres.create_database("virtuoz_test")
    url = postgres.url("virtuoz_test")
    upgrade(url)
    return url


@pytest.fixture(scope="session")
def redis_server(servers_dir: Path) -> Iterator[EmbeddedRedis]:
    server = EmbeddedRedis(servers_dir / "redis", free_port(), log_dir=servers_dir).start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def redis_url(redis_server: EmbeddedRedis) -> str:
    return redis_server.url()


@pytest.fixture
def settings(database_url: str, redis_url: str, tmp_path: Path) -> Settings:
    """Test settings pointing at this worker's real servers; tests override fields with model_copy."""
    return Settings(
        env="test",
        data_dir=tmp_path,
        database_url=database_url,
        redis_url=redis_url,
        chains=[],
        readiness={"workers": [], "chains": False},
        log_json=False,
        # Fresh test users are unverified (KYC level 0): no KYC withdrawal limits unless a test sets them.
        kyc_withdrawal_limits={},
    )


def pytest_configure(config: pytest.Config) -> None:
    # Unset means production (fail closed): the in-process apps' settings and every process a test
    # spawns with the inherited environment run as `test`, whatever the developer's shell exported.
    os.environ["VIRTUOZ_ENV"] = "test"
    # Every `virtuoz api` a test starts runs two workers: the multi-process path, and not one
    # process per core of a large CI machine.
    os.environ.setdefault("VIRTUOZ_API_WORKERS", "2")
    os.environ.setdefault("XDG_RUNTIME_DIR", str(Path("/tmp") / f"virtuoz-runtime-{os.getuid()}"))
    Path(os.environ["XDG_RUNTIME_DIR"]).mkdir(mode=0o700, exist_ok=True)
