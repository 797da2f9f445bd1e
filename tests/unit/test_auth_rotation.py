"""Rotating the JWT secret: a key set chosen by the token's ``kid``, the plain secret kept working."""
from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time

import jwt
import pytest

from chalicelib.api.auth import issue, key_set, verify
from chalicelib.errors import ConfigError, Unauthorized

OLD = "old-secret-0123456789abcdef"
NEW = "new-secret-fedcba9876543210"


def keys(current: str, **by_id: str) -> str:
    return json.dumps({"current": current, "keys": by_id})


def token(secret: str, kid: str | None = None, sub: str = "team-1") -> str:
    headers = {"kid": kid} if kid is not None else None
    return jwt.encode({"sub": sub, "exp": int(time.time()) + 600}, secret, algorithm="HS256", headers=headers)


# The rotation, step by step: the same two tokens judged by each stage of the secret.
BEFORE = OLD  # today: one plain secret
MIGRATED = keys("k1", k1=OLD)  # the plain secret becomes key k1
ANNOUNCED = keys("k1", k1=OLD, k2=NEW)  # k2 known everywhere, k1 still signs
SWITCHED = keys("k2", k1=OLD, k2=NEW)  # k2 signs, k1 still accepted: the overlap
DONE = keys("k2", k2=NEW)  # k1 removed


def test_a_token_of_the_previous_key_passes_during_the_overlap_and_fails_after_it_is_removed():
    previous = issue("team-1", ANNOUNCED)  # signed with k1 before the switch
    assert jwt.get_unverified_header(previous)["kid"] == "k1"
    fresh = issue("team-1", SWITCHED)
    assert jwt.get_unverified_header(fresh)["kid"] == "k2"
    for stage in (ANNOUNCED, SWITCHED):
        assert verify(previous, stage).tenant_id == "team-1"
        assert verify(fresh, stage).tenant_id == "team-1"
    assert verify(fresh, DONE).tenant_id == "team-1"
    with pytest.raises(Unauthorized) as e:
        verify(previous, DONE)
    assert e.value.message == "invalid token: unknown key id"


def test_tokens_without_kid_keep_working_with_the_current_key_during_the_migration():
    legacy = issue("team-1", BEFORE)
    assert "kid" not in jwt.get_unverified_header(legacy)
    for stage in (BEFORE, MIGRATED, ANNOUNCED):  # the old secret still signs: still valid
        assert verify(legacy, stage).tenant_id == "team-1"
    with pytest.raises(Unauthorized):  # once another key signs, a token without kid is checked with it
        verify(legacy, SWITCHED)


def test_the_plain_secret_format_is_unchanged():
    t = issue("team-1", OLD, scopes="admin", now=time.time())
    assert jwt.decode(t, OLD, algorithms=["HS256"])["sub"] == "team-1"  # what every client minted so far
    assert verify(t, OLD).admin
    assert key_set(OLD).current is None


def test_an_unknown_kid_is_401_and_says_nothing_about_the_keys():
    for stage in (SWITCHED, OLD):  # a plain secret has no ids at all
        for kid in ("k3", "", "k1' or '1'='1"):
            with pytest.raises(Unauthorized) as e:
                verify(token(NEW, kid), stage)
            assert e.value.status_code == 401
            assert e.value.message == "invalid token: unknown key id"
            for leak in ("k1", "k2", OLD, NEW, kid or "kid-is-empty"):
                assert leak not in e.value.message


@pytest.mark.parametrize("signed_with, kid", [(OLD, "k2"), (NEW, "k1"), ("other-secret-0123456789", "k2")],
                         ids=["old-key-claiming-new-id", "new-key-claiming-old-id", "stranger"])
def test_a_kid_does_not_vouch_for_a_token_signed_with_another_key(signed_with, kid):
    with pytest.raises(Unauthorized) as e:
        verify(token(signed_with, kid), SWITCHED)
    assert "Signature verification failed" in e.value.message


def test_a_kid_that_is_not_a_string_is_401():
    def b64(raw: bytes) -> str:
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()

    head = b64(json.dumps({"alg": "HS256", "typ": "JWT", "kid": 7}).encode())
    body = b64(json.dumps({"sub": "team-1", "exp": int(time.time()) + 600}).encode())
    mac = hmac.new(NEW.encode(), f"{head}.{body}".encode(), hashlib.sha256).digest()
    with pytest.raises(Unauthorized):
        verify(f"{head}.{body}.{b64(mac)}", SWITCHED)


@pytest.mark.parametrize("value, words", [
    ("{not json", "not JSON"),
    (json.dumps({"keys": {"k1": OLD}}), "'current'"),
    (json.dumps({"current": "k9", "keys": {"k1": OLD}}), "'current'"),
    (json.dumps({"current": "k1", "keys": {}}), "'keys'"),
    (json.dumps({"current": "k1", "keys": [OLD]}), "'keys'"),
    (json.dumps({"current": "k1", "keys": {"k1": "short"}}), "at least 16"),
    (json.dumps({"current": "k 1", "keys": {"k 1": OLD}}), "key ids"),
    (json.dumps({"current": "k1", "keys": {"k1": OLD}, "previous": "k0"}), "exactly the fields"),
    ("", "empty"),
])
def test_a_malformed_key_set_is_a_config_error_that_never_quotes_the_secret(value, words):
    with pytest.raises(ConfigError) as e:
        verify(token(OLD), value)
    assert words in e.value.message
    assert OLD not in e.value.message and "short" not in e.value.message
