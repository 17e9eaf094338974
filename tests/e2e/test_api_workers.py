"""`virtuoz api` with two worker processes on one port: both answer, /metrics counts them both,
what one worker is told over the control channel reaches the other, and SIGTERM to the parent
stops them all."""

from __future__ import annotations

import http.client
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis
from prometheus_client.parser import text_string_to_metric_families

from cli.api_workers import metrics_dir_for
from core import control
from core.settings import Settings
from core.signing import generate_keypair, sign_payload
from devnet.processes import ManagedProcess, free_port, port_open

pytestmark = pytest.mark.e2e

REPO_ROOT = Path(__file__).resolve().parents[2]
WORKERS = 2
# Bounds for a hung test, not performance limits.
START_TIMEOUT = 90.0
STOP_TIMEOUT = 30.0
# Fresh connections tried before concluding the kernel never sends one to some worker: each lands
# on a worker chosen by a hash of its address and port, so 2 workers both answer within a few.
CONNECTION_TRIES = 200
POLLS, POLL_SECONDS = 2000, 0.01
PASSWORD = "Correct-Horse-Battery-9"
FAILING_POLICY = {"database": True, "redis": True, "chains": False, "workers": ["nonexistent-worker"],
                  "timeout_seconds": 2.0, "heartbeat_max_age_seconds": 30.0}


@dataclass
class Api:
    process: ManagedProcess
    port: int
    data_dir: Path
    operator_key: str
    env: dict[str, str]

    def connect(self) -> http.client.HTTPConnection:
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)


def call(connection: http.client.HTTPConnection, method: str, path: str, body: object = None,
         headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    payload = None if body is None else json.dumps(body).encode()
    connection.request(method, path, body=payload, headers={"Content-Type": "application/json", **(headers or {})})
    response = connection.getresponse()
    return response.status, response.read()


def fresh(api: Api, method: str, path: str, body: object = None, headers: dict[str, str] | None = None
          ) -> tuple[int, bytes]:
    """One request on a connection of its own: the kernel picks the worker afresh."""
    connection = api.connect()
    try:
        return call(connection, method, path, body, headers)
    finally:
        connection.close()


def worker_requests(exposition: bytes) -> dict[str, float]:
    for family in text_string_to_metric_families(exposition.decode()):
        if family.name == "virtuoz_api_worker_requests":
            return {sample.labels["worker"]: sample.value for sample in family.samples if sample.name.endswith("_total")}
    return {}


def request_count(exposition: bytes, route: str, status: str) -> float:
    for family in text_string_to_metric_families(exposition.decode()):
        if family.name == "virtuoz_http_request_duration_seconds":
            return sum(sample.value for sample in family.samples if sample.name.endswith("_count")
                       and sample.labels["route"] == route and sample.labels["status"] == status)
    return 0.0


def children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:  # the field after the state is the parent
                found.append(int(entry.name))
    return found


def running(pid: int) -> bool:
    try:
        return (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def worker_of(connection: http.client.HTTPConnection) -> str:
    """Which worker this kept-alive connection reaches: two scrapes in a row on it, nothing else in
    flight, and the first one is counted (before its answer is sent) by the worker that answered it."""
    first = worker_requests(call(connection, "GET", "/metrics")[1])
    second = worker_requests(call(connection, "GET", "/metrics")[1])
    [worker] = [name for name, count in second.items() if count != first.get(name, 0)]
    return worker


@pytest.fixture
def api(database_url: str, redis_url: str, tmp_path: Path) -> Iterator[Api]:
    private, public = generate_keypair()
    port = free_port()
    env = {
        **os.environ,
        "VIRTUOZ_ENV": "test", "VIRTUOZ_DATA_DIR": str(tmp_path), "VIRTUOZ_DATABASE_URL": database_url,
        "VIRTUOZ_REDIS_URL": redis_url, "VIRTUOZ_CHAINS": "[]", "VIRTUOZ_LOG_JSON": "false",
        "VIRTUOZ_READINESS": json.dumps({"workers": [], "chains": False}),
        "VIRTUOZ_API_WORKERS": str(WORKERS), "VIRTUOZ_DATABASE_POOL_SIZE": "2",
        "VIRTUOZ_OPERATOR_PUBLIC_KEYS": json.dumps({"ops": public}),
    }
    process = ManagedProcess("api", [sys.executable, "-m", "cli", "api", "--host", "127.0.0.1", "--port", str(port)],
                             log_path=tmp_path / "api.log", env=env, cwd=REPO_ROOT)
    process.start()
    try:
        process.wait_until(lambda: port_open(port), timeout=START_TIMEOUT)
        yield Api(process, port, tmp_path, private, env)
    finally:
        process.stop(timeout=STOP_TIMEOUT)
        # The readiness policy is kept in this pytest worker's Redis: the next test starts from the default.
        client = redis.Redis.from_url(redis_url)
        try:
            client.delete(control.READINESS_KEY)
            client.publish(control.CHANNEL, json.dumps({"kind": "readiness_policy"}))
        finally:
            client.close()


def both_workers_answering(api: Api) -> dict[str, float]:
    """Fresh connections until one scrape shows requests answered by each worker; a worker still
    starting is not listening yet and gets none."""
    for _ in range(CONNECTION_TRIES):
        assert fresh(api, "GET", "/api/v1/status")[0] == 200
        counts = worker_requests(fresh(api, "GET", "/metrics")[1])
        if len(counts) == WORKERS and all(counts.values()):
            return counts
    raise AssertionError(f"not every worker answered: {counts}\n{api.process.tail()}")


def connection_per_worker(api: Api) -> dict[str, http.client.HTTPConnection]:
    connections: dict[str, http.client.HTTPConnection] = {}
    for _ in range(CONNECTION_TRIES):
        connection = api.connect()
        worker = worker_of(connection)
        if worker in connections:
            connection.close()
        else:
            connections[worker] = connection
        if len(connections) == WORKERS:
            return connections
    raise AssertionError(f"connections reached only workers {sorted(connections)}")


def test_two_workers_serve_one_port_and_metrics_count_them_both(api: Api):
    both_workers_answering(api)
    # Whichever worker answers the scrape reports the other's requests too.
    sent = 40
    before = fresh(api, "GET", "/metrics")[1]
    for _ in range(sent):
        assert fresh(api, "GET", "/api/v1/status")[0] == 200
    scrapes = [before] + [fresh(api, "GET", "/metrics")[1] for _ in range(4)]
    for number in range(1, len(scrapes)):
        earlier, later = scrapes[number - 1], scrapes[number]
        assert set(worker_requests(later)) == {"0", "1"}
        # Since the scrape before: the requests sent (before the first one only), and that scrape.
        status_requests = sent if number == 1 else 0
        assert sum(worker_requests(later).values()) - sum(worker_requests(earlier).values()) == status_requests + 1
        assert (request_count(later, "/api/v1/status", "200") - request_count(earlier, "/api/v1/status", "200")
                == status_requests)
    assert "process_resident_memory_bytes" not in scrapes[-1].decode()  # per process: not summable

    # The parent holds no socket; its two children are the workers, and SIGTERM to it stops them all.
    parent = api.process.pid
    assert parent is not None
    workers = children(parent)
    assert len(workers) == WORKERS
    for pid in workers:
        assert "--worker" in (Path("/proc") / str(pid) / "cmdline").read_bytes().decode().split("\0")
    metrics_dir = metrics_dir_for(Settings(data_dir=api.data_dir), api.port)
    assert any(metrics_dir.iterdir())

    # SO_REUSEPORT would let a second group share the port: it refuses to start, leaving the first alone.
    second = subprocess.run([sys.executable, "-m", "cli", "api", "--host", "127.0.0.1", "--port", str(api.port)],
                            env=api.env, cwd=REPO_ROOT, capture_output=True, text=True, timeout=START_TIMEOUT,
                            check=False)
    assert second.returncode == 1 and "cannot listen on 127.0.0.1" in second.stderr, second.stderr
    assert any(metrics_dir.iterdir()) and fresh(api, "GET", "/health")[0] == 200

    os.kill(parent, signal.SIGTERM)
    assert api.process.process is not None
    assert api.process.process.wait(STOP_TIMEOUT) == 0, api.process.tail()
    assert not [pid for pid in workers if running(pid)]
    assert not port_open(api.port)
    assert not metrics_dir.exists()


def test_a_worker_that_dies_stops_the_group(api: Api):
    both_workers_answering(api)
    parent = api.process.pid
    assert parent is not None
    dying, survivor = children(parent)
    os.kill(dying, signal.SIGKILL)
    assert api.process.process is not None
    # Non-zero: the supervisor above (the devnet's, systemd) starts the group again.
    assert api.process.process.wait(STOP_TIMEOUT) != 0
    assert not running(survivor)
    assert not port_open(api.port)


def test_what_one_worker_is_told_reaches_the_other(api: Api):
    connections = connection_per_worker(api)
    told, other = connections["0"], connections["1"]
    for connection in connections.values():
        assert call(connection, "GET", "/readiness")[0] == 200

    # A signed readiness policy applied on one worker: the other holds its policy in memory with no
    # expiry, so only the control channel can change what it answers.
    envelope = sign_payload(api.operator_key, "ops", {"policy": FAILING_POLICY})
    status, body = call(told, "POST", "/api/v1/auth/readiness-policy/reload", envelope)
    assert status == 200, body
    for connection in (told, other):
        for _ in range(POLLS):
            status, body = call(connection, "GET", "/readiness")
            if status == 503:
                break
            time.sleep(POLL_SECONDS)
        assert status == 503 and json.loads(body)["failing"] == ["workers"], body

    # A session revoked through one worker is refused by the other, which had it cached as live: a
    # logout publishes nothing, the cache's short life (VIRTUOZ_SESSION_CACHE_SECONDS) is the bound.
    email = f"workers-{uuid.uuid4().hex[:12]}@example.com"
    status, body = call(told, "POST", "/api/v1/auth/register", {"email": email, "password": PASSWORD,
                                                                "display_name": "Two workers"})
    assert status == 201, body
    status, body = call(told, "POST", "/api/v1/auth/login", {"email": email, "password": PASSWORD})
    assert status == 200, body
    bearer = {"Authorization": f"Bearer {json.loads(body)['access_token']}"}
    assert call(other, "GET", "/api/v1/wallet/balances", headers=bearer)[0] == 200
    assert call(told, "POST", "/api/v1/auth/logout", {}, headers=bearer)[0] == 200
    for _ in range(POLLS):
        status, body = call(other, "GET", "/api/v1/wallet/balances", headers=bearer)
        if status == 401:
            break
        time.sleep(POLL_SECONDS)
    assert status == 401, body
    for connection in connections.values():
        connection.close()
