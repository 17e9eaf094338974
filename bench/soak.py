"""Memory under a steady mixed load: every platform process's RSS, sampled while the devnet is busy.

    .venv/bin/python bench/soak.py [--minutes 10] [--interval 10] [--rate 40] [--clients 16]
                                   [--data-dir .devnet]

Uses the devnet running on ``--data-dir`` (its ``devnet.json``), or starts one of its own in a
temporary directory on free ports when none runs there. For ``--minutes`` it sends a steady mixed
load to 127.0.0.1 at about ``--rate`` requests per second from ``--clients`` concurrent clients of
the demo customer (one session): balances, activity, deposits, withdrawals and address book lists,
the profile, escrow contracts created (with an Idempotency-Key; every tenth funded and released to
the demo support user as seller) and listed. Every ``--interval``
seconds it samples the RSS of each process of the platform (API and its workers, every Dramatiq
worker, the scanners, the scheduler, the signer, the TRP listener), found as the processes running
``python -m cli …`` with this devnet's data directory, and prints them as a table.

The verdict compares each process's RSS at the end with its RSS after the first minute (the
warm-up: pools opened, caches filled, modules imported): within 10 % is a pass. A process that
grows past it is a leak to look for; the exit status is 1 then.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import psutil

from devnet.processes import side_by_side_env

WARM_UP_SECONDS = 60.0
TOLERANCE = 0.10
START_TIMEOUT = 240.0


@dataclass
class Samples:
    names: list[str] = field(default_factory=list)
    rows: list[tuple[float, dict[str, float]]] = field(default_factory=list)  # (seconds, name -> MiB)


def platform_processes(data_dir: Path) -> dict[str, psutil.Process]:
    """The devnet's children (``python -m cli <role> …``) by a readable name: "worker custody", "api", "api#2"…"""
    found: dict[str, psutil.Process] = {}
    for process in psutil.process_iter(["cmdline"]):
        command = process.info["cmdline"] or []
        if "-m" not in command or "cli" not in command or "devnet" in command:
            continue
        try:
            if Path(process.environ().get("VIRTUOZ_DATA_DIR", "")).resolve() != data_dir:
                continue
        except (psutil.AccessDenied, psutil.NoSuchProcess, OSError):
            continue
        role = " ".join(command[command.index("cli") + 1:]).replace("--chain ", "")
        name, copy = role or "cli", 2
        while name in found:
            name, copy = f"{role}#{copy}", copy + 1
        found[name] = process
    return dict(sorted(found.items()))


def rss_mib(processes: dict[str, psutil.Process]) -> dict[str, float]:
    sizes = {}
    for name, process in processes.items():
        try:
            sizes[name] = process.memory_info().rss / 2**20
        except psutil.NoSuchProcess:
            sizes[name] = float("nan")  # restarted by the devnet's supervisor: a finding of its own
    return sizes


def start_devnet(root: Path) -> tuple[subprocess.Popen[bytes], Path]:
    data_dir = root / "devnet"
    env = side_by_side_env(data_dir)
    output = open(root / "devnet-output.log", "ab")  # noqa: SIM115 - open for the devnet's lifetime
    process = subprocess.Popen([sys.executable, "-m", "cli", "devnet"], env=env, stdout=output,
                               stderr=subprocess.STDOUT)
    deadline = time.monotonic() + START_TIMEOUT
    while not (data_dir / "devnet.json").exists():
        if process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"the devnet did not start; see {root / 'devnet-output.log'}")
        time.sleep(0.5)
    return process, data_dir


class Load:
    """Steady mixed traffic from logged-in customers; counts answers by status."""

    def __init__(self, api_url: str, user: dict[str, str], seller: str, clients: int, rate: float) -> None:
        self.api = api_url.rstrip("/") + "/api/v1"
        self.seller = seller
        self.user, self.clients, self.pause = user, clients, clients / rate
        self.statuses: dict[int, int] = {}
        self.headers: dict[str, str] = {}
        self.stopping = asyncio.Event()

    async def _login(self, http: aiohttp.ClientSession) -> dict[str, str]:
        async with http.post(f"{self.api}/auth/login", json={"email": self.user["email"],
                                                             "password": self.user["password"]}) as response:
            body = await response.json()
            if response.status != 200:
                raise RuntimeError(f"login failed: {response.status} {body}")
        return {"Authorization": f"Bearer {body['access_token']}"}

    async def _call(self, http: aiohttp.ClientSession, method: str, path: str, headers: dict[str, str],
                    body: dict | None = None) -> dict:
        async with http.request(method, self.api + path, json=body, headers=headers) as response:
            self.statuses[response.status] = self.statuses.get(response.status, 0) + 1
            return await response.json() if response.content_type == "application/json" else {}

    async def _relogin(self, http: aiohttp.ClientSession) -> None:
        # One session for every client: logins in a burst count as guesses (the login throttle).
        while not self.stopping.is_set():
            try:
                await asyncio.wait_for(self.stopping.wait(), 240)  # access tokens live minutes
            except TimeoutError:
                self.headers = await self._login(http)

    async def _client(self, http: aiohttp.ClientSession, seed: int) -> None:
        rng = random.Random(seed)
        reads = ["/wallet/balances", "/wallet/activity", "/wallet/deposits", "/platform/crypto/withdrawals",
                 "/wallet/address-book", "/escrow/contracts", "/me"]
        count = 0
        while not self.stopping.is_set():
            headers = self.headers
            count += 1
            if count % 5 == 0:
                created = await self._call(http, "POST", "/escrow", {**headers, "Idempotency-Key": str(uuid.uuid4())},
                                           {"title": "Soak", "amount": "1.00", "currency": "USD",
                                            "seller_email": self.seller})
                if count % 50 == 0 and "id" in created:
                    await self._call(http, "POST", f"/escrow/{created['id']}/fund", headers, {})
                    await self._call(http, "POST", f"/escrow/{created['id']}/release", headers, {})
            else:
                await self._call(http, "GET", rng.choice(reads), headers)
            try:
                await asyncio.wait_for(self.stopping.wait(), self.pause * rng.uniform(0.5, 1.5))
            except TimeoutError:
                pass

    async def run(self) -> None:
        connector = aiohttp.TCPConnector(limit=self.clients)
        async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=30)) as http:
            self.headers = await self._login(http)
            await asyncio.gather(self._relogin(http), *(self._client(http, seed) for seed in range(self.clients)))


async def soak(manifest: dict, data_dir: Path, minutes: float, interval: float, rate: float,
               clients: int) -> Samples:
    customer = next(user for user in manifest["users"] if user["role"] == "customer")
    seller = next(user["email"] for user in manifest["users"] if user["role"] == "support")
    if not manifest["api_url"].startswith(("http://127.0.0.1", "http://localhost")):
        raise SystemExit("the soak only loads this machine: the devnet's API must be on 127.0.0.1")
    load = Load(manifest["api_url"], customer, seller, clients, rate)
    task = asyncio.create_task(load.run())
    samples, started = Samples(), time.monotonic()
    processes = platform_processes(data_dir)
    samples.names = list(processes)
    for index, name in enumerate(samples.names, start=1):
        print(f"  [{index}] {name} (pid {processes[name].pid})")
    print("        " + " ".join(f"{f'[{index}]':>8}" for index in range(1, len(samples.names) + 1)), flush=True)
    try:
        while (elapsed := time.monotonic() - started) < minutes * 60:
            if task.done():
                task.result()  # the load stopped: say why
            samples.rows.append((elapsed, rss_mib(processes)))
            print(f"{elapsed:6.0f}s " + " ".join(f"{samples.rows[-1][1][name]:8.1f}" for name in samples.names),
                  flush=True)
            await asyncio.sleep(interval)
        samples.rows.append((time.monotonic() - started, rss_mib(processes)))
    finally:
        load.stopping.set()
        await task
    print("answers by status: " + ", ".join(f"{status}: {count}" for status, count in sorted(load.statuses.items())))
    return samples


def verdict(samples: Samples) -> bool:
    warm = next((sizes for seconds, sizes in samples.rows if seconds >= WARM_UP_SECONDS), samples.rows[0][1])
    end = samples.rows[-1][1]
    passed = True
    print(f"\n{'process':32} {'after 1 min':>12} {'at the end':>12} {'change':>8}")
    for name in samples.names:
        change = (end[name] - warm[name]) / warm[name]
        ok = change <= TOLERANCE  # shrinking is fine; NaN (a restart) is not ok
        passed &= ok
        print(f"{name:32} {warm[name]:10.1f}Mi {end[name]:10.1f}Mi {change:+8.1%} {'ok' if ok else 'GREW'}")
    print(f"soak: {'every process within' if passed else 'NOT every process within'} {TOLERANCE:.0%} of its RSS "
          "after the first minute")
    return passed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--interval", type=float, default=10.0)
    parser.add_argument("--rate", type=float, default=40.0, help="requests per second, all clients together")
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--data-dir", type=Path, default=Path(os.environ.get("VIRTUOZ_DATA_DIR", ".devnet")))
    args = parser.parse_args()
    data_dir, devnet = args.data_dir.resolve(), None
    temporary = None
    if not (data_dir / "devnet.json").exists():
        temporary = tempfile.TemporaryDirectory(prefix="virtuoz-soak-")
        print(f"no devnet on {data_dir}: starting one in {temporary.name}", flush=True)
        devnet, data_dir = start_devnet(Path(temporary.name))
    try:
        manifest = json.loads((data_dir / "devnet.json").read_text())
        print("RSS (MiB) every", args.interval, "s:", flush=True)
        samples = asyncio.run(soak(manifest, data_dir, args.minutes, args.interval, args.rate, args.clients))
        return 0 if verdict(samples) else 1
    finally:
        if devnet is not None:
            devnet.send_signal(signal.SIGINT)
            try:
                devnet.wait(timeout=60)
            except subprocess.TimeoutExpired:
                devnet.kill()
        if temporary is not None:
            temporary.cleanup()


if __name__ == "__main__":
    sys.exit(main())
