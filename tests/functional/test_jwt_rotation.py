"""Rotating the JWT secret through the API: the key set read from Secrets Manager (as in AWS),
tokens chosen by ``kid``, each new container reading the secret's value of its time."""
from __future__ import annotations

import json

import boto3
import jwt
import pytest

from chalicelib.api.auth import issue
from chalicelib.services import wiring
from chalicelib.services.container import Container
from tests.functional.conftest import Api

SECRET_NAME = "agent-scheduler-jwt"
OLD = "old-secret-0123456789abcdef"
NEW = "new-secret-fedcba9876543210"


@pytest.fixture
def settings_overrides():
    return {"jwt_secret": "", "jwt_secret_arn": SECRET_NAME}


def put_secret(value: str) -> None:
    sm = boto3.client("secretsmanager", region_name="us-east-1")
    try:
        sm.put_secret_value(SecretId=SECRET_NAME, SecretString=value)
    except sm.exceptions.ResourceNotFoundException:
        sm.create_secret(Name=SECRET_NAME, SecretString=value)


def new_container(system) -> None:
    """A fresh Lambda container: it reads the secret again."""
    wiring.set_container(Container(system.settings, clock=system.clock))


def keys(current: str, **by_id: str) -> str:
    return json.dumps({"current": current, "keys": by_id})


def status(chalice_client, token: str) -> int:
    return Api(chalice_client, token).get("/api/agents").status_code


def test_a_rotation_logs_nobody_out_until_the_old_key_is_removed(system, chalice_client):
    put_secret(OLD)  # today's plain secret
    legacy = issue("tenant-a", OLD)
    assert status(chalice_client, legacy) == 200

    put_secret(keys("k1", k1=OLD, k2=NEW))
    new_container(system)
    signed_k1 = issue("tenant-a", keys("k1", k1=OLD, k2=NEW))
    assert status(chalice_client, legacy) == 200 and status(chalice_client, signed_k1) == 200

    put_secret(keys("k2", k1=OLD, k2=NEW))  # the overlap: k2 signs, k1 still accepted
    new_container(system)
    signed_k2 = issue("tenant-a", keys("k2", k2=NEW))
    assert jwt.get_unverified_header(signed_k2)["kid"] == "k2"
    assert status(chalice_client, signed_k1) == 200 and status(chalice_client, signed_k2) == 200

    put_secret(keys("k2", k2=NEW))  # k1 removed
    new_container(system)
    assert status(chalice_client, signed_k2) == 200
    r = Api(chalice_client, signed_k1).get("/api/agents")
    assert r.status_code == 401
    assert r.json == {"code": "UNAUTHORIZED", "message": "invalid token: unknown key id"}


def test_an_unknown_kid_is_a_plain_401(system, chalice_client):
    put_secret(keys("k2", k1=OLD, k2=NEW))
    stranger = jwt.encode({"sub": "tenant-a", "exp": 4_102_444_800}, NEW, algorithm="HS256",
                          headers={"kid": "k3"})
    r = Api(chalice_client, stranger).get("/api/agents")
    assert r.status_code == 401
    assert r.json == {"code": "UNAUTHORIZED", "message": "invalid token: unknown key id"}
    assert "k1" not in r.body.decode() and "k2" not in r.body.decode()
