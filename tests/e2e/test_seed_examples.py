"""The spec's curl examples, run verbatim against a running devnet."""

from __future__ import annotations

import email
import email.policy
import json
import re
import subprocess
import time
import urllib.request
import uuid
from pathlib import Path

import pytest

from tests.e2e.devnet_harness import Devnet

pytestmark = pytest.mark.e2e

MAIL_TIMEOUT = 120.0  # a generous deadline for the notifications worker and the SMTP server

SPEC = Path(__file__).parent / "data" / "virtuoz-http-api.txt"  # a copy of ../shared/spec, checked below
SHARED_SPEC = Path(__file__).resolve().parents[3] / "shared" / "spec" / "virtuoz-http-api.txt"


def seed_curl_commands() -> list[str]:
    """The spec's curl examples as bash would read them: a command goes on after a trailing
    backslash and inside an open single-quoted body."""
    commands, current = [], []
    for line in SPEC.read_text().splitlines():
        if line.startswith("curl ") or current:
            current.append(line)
            text = "\n".join(current)
            if not line.endswith("\\") and text.count("'") % 2 == 0:
                commands.append(text)
                current = []
    return commands


def run_seed_examples(api_url: str, workdir: Path) -> list[dict]:
    """Run every curl example verbatim (only the host is ours, over plain HTTP on loopback)."""
    host = api_url.removeprefix("http://")
    answers: list[dict] = []
    escrow_id = None
    for command in seed_curl_commands():
        command = command.replace("https://YOUR_HOST", f"http://{host}")
        if "ESCROW_ID" in command:
            command = command.replace("ESCROW_ID", escrow_id)
        result = subprocess.run(["bash", "-c", command], cwd=workdir, capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, (command, result.stderr)
        answer = json.loads(result.stdout)
        answers.append(answer)
        if escrow_id is None and answer.get("state") == "created":
            escrow_id = answer["id"]
    return answers


def test_the_spec_copy_matches_shared():
    if SHARED_SPEC.exists():  # beside the clone in CI and in a session
        assert SPEC.read_text() == SHARED_SPEC.read_text()
    assert len(seed_curl_commands()) == 11


@pytest.fixture(scope="module")
def devnet(tmp_path_factory):
    running = Devnet(tmp_path_factory.mktemp("seed") / "devnet")
    manifest, _ = running.start()
    yield running, manifest
    running.stop()


def test_the_seed_curl_examples_work_verbatim(devnet, tmp_path):
    _, manifest = devnet
    (register, login, me, balances, activity, created, detail, funded, released, status, readiness) = run_seed_examples(
        manifest["api_url"], tmp_path)
    assert register["email"] == "user@example.com" and register["roles"] == ["customer"]
    assert login["token_type"] == "Bearer" and login["user"]["id"] == register["id"]
    assert me["email"] == "user@example.com" and me["kyc_status"] == "unverified"
    assert balances["balances"] == [{"currency": "USD", "available": "10000.00", "held": "0.00", "total": "10000.00"}]
    assert activity["items"][0]["type"] == "sandbox_credit" and activity["next_cursor"] is None
    assert (created["amount"], created["currency"], created["state"], created["seller"]) == ("8000.00", "USD",
                                                                                              "created", None)
    assert detail["id"] == created["id"]
    assert funded["state"] == "funded"
    # The example names no seller: releasing is refused, with the contract still funded.
    assert released["error"]["code"] == "seller_required"
    assert status["service"] == "virtuoz" and {c["name"] for c in status["chains"]} == {"ethereum", "polygon"}
    assert readiness["status"] == "ready"
    assert (tmp_path / "cookies.txt").exists()




def post_json(url: str, payload: dict, headers: dict[str, str] | None = None) -> tuple[int, dict]:
    request = urllib.request.Request(url, data=json.dumps(payload).encode(), method="POST",
                                     headers={"Content-Type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def test_an_admin_test_send_lands_in_the_devnet_maildir(devnet):
    _, manifest = devnet
    api = manifest["api_url"] + "/api/v1"
    admin = next(user for user in manifest["users"] if user["role"] == "admin")
    status, login = post_json(f"{api}/auth/login", {"email": admin["email"], "password": admin["password"]})
    assert status == 200, login
    recipient = f"e2e-{uuid.uuid4().hex[:10]}@example.com"
    status, queued = post_json(f"{api}/cms/email/welcome/test-send",
                               {"to": recipient, "variables": {"display_name": "Ada <Lovelace>"}},
                               {"Authorization": f"Bearer {login['access_token']}"})
    assert status == 202 and queued["state"] == "queued", queued

    maildir = Path(manifest["smtp"]["maildir"])

    def landed() -> list[email.message.EmailMessage]:
        parsed = (email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
                  for path in maildir.glob("*.eml"))  # written under a dot-name, then renamed: always whole
        return [message for message in parsed if message["To"] == recipient]

    deadline = time.monotonic() + MAIL_TIMEOUT
    while not (found := landed()):
        assert time.monotonic() < deadline, f"no .eml for {recipient} in {maildir} after {MAIL_TIMEOUT}s"
        time.sleep(0.2)
    [message] = found
    assert message["Subject"] == "Welcome to VirtuOZ, Ada <Lovelace>"
    assert message["Message-ID"] == f"<{queued['id']}@virtuoz>"
    assert "Ada &lt;Lovelace&gt;" in message.get_body(("html",)).get_content()


def get_json(url: str, headers: dict[str, str]) -> dict:
    with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=10) as response:
        return json.loads(response.read())


def test_a_new_account_verifies_its_email_through_the_devnet_maildir_and_page(devnet):
    _, manifest = devnet
    api_url = manifest["api_url"]
    api = api_url + "/api/v1"
    # The demo users are verified: they can be sellers and withdraw.
    customer = next(user for user in manifest["users"] if user["role"] == "customer")
    status, login = post_json(f"{api}/auth/login", {"email": customer["email"], "password": customer["password"]})
    assert status == 200, login
    assert get_json(f"{api}/me", {"Authorization": f"Bearer {login['access_token']}"})["email_verified"] is True

    recipient = f"verify-{uuid.uuid4().hex[:10]}@example.com"
    password = "Verify-My-Address-42"
    status, created = post_json(f"{api}/auth/register",
                                {"email": recipient, "password": password, "display_name": "New User"})
    assert status == 201, created
    maildir = Path(manifest["smtp"]["maildir"])
    deadline = time.monotonic() + MAIL_TIMEOUT
    while True:
        parsed = (email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
                  for path in maildir.glob("*.eml"))
        found = [message for message in parsed if message["To"] == recipient
                 and message["Subject"] == "Confirm your email address for VirtuOZ"]
        if found:
            break
        assert time.monotonic() < deadline, f"no verification email for {recipient} in {maildir}"
        time.sleep(0.2)
    text = found[0].get_body(("plain",)).get_content()
    # No front end on the devnet: the link points at the API, which serves the page itself.
    [token] = set(re.findall(re.escape(api_url) + r"/verify-email\?token=([A-Za-z0-9_-]+)", text))
    with urllib.request.urlopen(f"{api_url}/verify-email?token={token}", timeout=10) as page:
        assert page.status == 200 and "/verify-email.js" in page.read().decode()

    status, verified = post_json(f"{api}/auth/email/verify", {"token": token})  # what the page's button posts
    assert (status, verified) == (200, {"email_verified": True})
    status, login = post_json(f"{api}/auth/login", {"email": recipient, "password": password})
    assert get_json(f"{api}/me", {"Authorization": f"Bearer {login['access_token']}"})["email_verified"] is True
