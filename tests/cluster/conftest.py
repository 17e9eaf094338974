"""The scale-out tests (`make test-cluster`): the platform on RabbitMQ, a private node per session.

Debian's rabbitmq-server must be installed: `make test-cluster` installs it when missing.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from devnet.processes import free_port
from devnet.servers import RabbitMQ


@pytest.fixture(scope="session")
def rabbitmq(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RabbitMQ]:
    root: Path = tmp_path_factory.mktemp("rabbitmq")
    server = RabbitMQ(root / "data", free_port(), log_dir=root).start()  # restarted by the tests
    yield server
    server.stop()
