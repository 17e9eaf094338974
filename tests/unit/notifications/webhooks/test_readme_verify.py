"""The README's receiver snippet ("Webhooks", "Verifying a signature") agrees with signing.verify."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from notifications.webhooks.signing import (
    new_secret,
    signature,
    signature_header,
    verify,
)

README = Path(__file__).resolve().parents[4] / "README.md"
SECRET = new_secret()
OLD = new_secret()
BODY = b'{"created_at":"2026-12-06T10:00:00Z","data":{"amount":"1.5"},"id":"e1","type":"deposit.credited"}'


@pytest.fixture(scope="module")
def readme_verify() -> Callable[..., bool]:
    section = README.read_text().split("**Verifying a signature**", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, re.DOTALL).group(1)
    assert len(code.strip().splitlines()) <= 12, "about ten lines"
    namespace: dict = {}
    exec(compile(code, "README.md", "exec"), namespace)  # noqa: S102 - the README's own code, as a reader copies it
    return namespace["verify"]


def cases(now: int) -> list[tuple[str, str, bytes]]:
    fresh, stale = now - 10, now - 1000
    return [
        ("current secret", signature_header([SECRET], fresh, BODY), BODY),
        ("rotated: both secrets sign", signature_header([OLD, SECRET], fresh, BODY), BODY),
        ("another secret", signature_header([OLD], fresh, BODY), BODY),
        ("body changed", signature_header([SECRET], fresh, BODY), BODY.replace(b"1.5", b"9.5")),
        ("too old", signature_header([SECRET], stale, BODY), BODY),
        ("from the future", signature_header([SECRET], now + 1000, BODY), BODY),
        ("no timestamp", f"v1={signature(SECRET, fresh, BODY)}", BODY),
        ("two timestamps", f"t={fresh},t={fresh},v1={signature(SECRET, fresh, BODY)}", BODY),
        ("timestamp not a number", f"t=x{fresh},v1={signature(SECRET, fresh, BODY)}", BODY),
        ("signed for another time", f"t={fresh},v1={signature(SECRET, fresh - 1, BODY)}", BODY),
        ("no signature", f"t={fresh}", BODY),
        ("empty", "", BODY),
    ]


def test_the_readme_snippet_accepts_and_refuses_what_signing_verify_does(readme_verify) -> None:
    now = int(time.time())
    answers = {name: (readme_verify(SECRET, header, body), verify(SECRET, header, body, now=now))
               for name, header, body in cases(now)}
    assert all(snippet == ours for snippet, ours in answers.values()), answers
    assert [name for name, (_, ours) in answers.items() if ours] == ["current secret", "rotated: both secrets sign"]
