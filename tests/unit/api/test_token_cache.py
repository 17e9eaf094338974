"""A verified access token is not verified again on every request, and is still refused once it expires."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest
import time_machine

from api import principal
from api.principal import IdentityCache
from core.settings import Settings
from identity.tokens import InvalidToken, issue_access_token


@pytest.fixture
def settings(tmp_path) -> Settings:
    return Settings(env="test", data_dir=tmp_path, chains=[], readiness={"workers": [], "chains": False})


def test_a_token_is_decoded_once_until_it_expires(settings, monkeypatch):
    decoded: list[str] = []
    decode = principal.decode_access_token
    monkeypatch.setattr(principal, "decode_access_token", lambda s, token: decoded.append(token) or decode(s, token))
    user_id, session_id = uuid.uuid4(), uuid.uuid4()
    cache = IdentityCache(session_ttl=1.0)
    issued = datetime.now(UTC)
    with time_machine.travel(issued, tick=False):
        token = issue_access_token(settings, user_id, session_id, ["customer"])
        first = cache.claims(settings, token)
        assert (first.user_id, first.session_id) == (user_id, session_id)
        assert cache.claims(settings, token) is first
    assert decoded == [token]

    expires = datetime.fromtimestamp(first.expires_at, UTC)
    with time_machine.travel(expires - timedelta(seconds=1), tick=False):
        assert cache.claims(settings, token) is first
    with time_machine.travel(expires, tick=False), pytest.raises(InvalidToken):
        cache.claims(settings, token)  # valid while exp is after now, as PyJWT has it
    assert decoded == [token, token]


def test_another_string_is_verified_on_its_own(settings):
    cache = IdentityCache(session_ttl=1.0)
    token = issue_access_token(settings, uuid.uuid4(), uuid.uuid4(), ["customer"])
    cache.claims(settings, token)
    header, payload, signature = token.split(".")
    forged = f"{header}.{payload}.{signature[:-2]}{'AA' if signature[-2:] != 'AA' else 'BB'}"
    with pytest.raises(InvalidToken):
        cache.claims(settings, forged)
    cache.drop_sessions()
    assert cache.tokens == {}
