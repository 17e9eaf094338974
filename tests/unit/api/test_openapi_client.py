"""A client generated from the OpenAPI document has every route: no model is dropped, so no route is."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from api.app import create_app
from api.keys import OPENAPI
from core.settings import Settings

BIN = Path(sys.executable).parent
HTTP_METHODS = {"get", "put", "post", "delete", "options", "head", "patch", "trace"}
# Every generated endpoint module builds its request from these two literals.
REQUEST = re.compile(r'"method":\s*"(\w+)",\s*"url":\s*"([^"]+)"')


@pytest.fixture(scope="module")
def document(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The document the app serves; building the app opens no connection, so no server is needed."""
    settings = Settings(env="test", data_dir=tmp_path_factory.mktemp("data"), chains=[],
                        readiness={"workers": [], "chains": False})
    return create_app(settings)[OPENAPI]


def test_component_names_are_not_module_paths(document: dict[str, Any]) -> None:
    assert [name for name in document["components"]["schemas"] if "__" in name] == []


def test_generated_client_has_every_operation(document: dict[str, Any], tmp_path: Path) -> None:
    spec = tmp_path / "openapi.json"
    spec.write_text(json.dumps(document))
    output = tmp_path / "client"
    # The generator formats its output with the ruff it finds on PATH, and warns without it.
    env = {**os.environ, "PATH": os.pathsep.join([str(BIN), os.environ.get("PATH", "")])}
    run = subprocess.run(
        [BIN / "openapi-python-client", "generate", "--path", spec, "--output-path", output, "--meta", "none"],
        capture_output=True, text=True, env=env, timeout=240,
    )
    printed = run.stdout + run.stderr
    assert run.returncode == 0, printed
    assert "warning" not in printed.lower(), printed

    generated = {(method, url) for module in (output / "api").rglob("*.py")
                 for method, url in REQUEST.findall(module.read_text())}
    operations = {(method, path) for path, item in document["paths"].items()
                  for method in item if method in HTTP_METHODS}
    assert sorted(operations - generated) == []
