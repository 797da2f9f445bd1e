"""Functional tests: the Chalice app on moto (in-process), a fixed clock."""
from __future__ import annotations

import json

import boto3
import pytest
from moto import mock_aws

from chalicelib.adapters.provision import provision
from chalicelib.api.auth import issue
from chalicelib.clock import FixedClock
from chalicelib.services import wiring
from chalicelib.services.container import Container
from chalicelib.settings import Settings
from devtools import moto_fixes
from local.rest import LocalClient as Client  # unknown paths answer the JSON 404, as deployed
from tests.conftest import T0

moto_fixes.apply()  # one table copy per moto transaction, transactions serialised

SECRET = "test-secret"


class Api:
    """chalice.test.Client with a bearer token and JSON helpers."""

    def __init__(self, client: Client, token: str | None) -> None:
        self.client = client
        self.token = token

    def _headers(self, extra=None):
        h = {"Content-Type": "application/json"}
        if self.token:
            h["Authorization"] = f"Bearer {self.token}"
        h.update(extra or {})
        return h

    def call(self, method: str, path: str, body=None, headers=None, raw: str | None = None):
        data = raw if raw is not None else (json.dumps(body) if body is not None else None)
        resp = self.client.http.request(method, path, headers=self._headers(headers), body=data)  # type: ignore[arg-type]
        resp.json = json.loads(resp.body) if resp.body else None  # type: ignore[attr-defined]
        return resp

    def get(self, path, **kw):
        return self.call("GET", path, **kw)

    def post(self, path, body=None, **kw):
        return self.call("POST", path, body, **kw)

    def patch(self, path, body=None, **kw):
        return self.call("PATCH", path, body, **kw)

    def delete(self, path, **kw):
        return self.call("DELETE", path, **kw)


@pytest.fixture
def clock():
    return FixedClock(T0)


@pytest.fixture
def settings_overrides():
    return {}


@pytest.fixture
def system(clock, settings_overrides):
    with mock_aws():
        base = Settings.from_env({"SCHEDULER_JWT_SECRET": SECRET}).with_(**settings_overrides)
        sqs = boto3.client("sqs", region_name="us-east-1")
        sns = boto3.client("sns", region_name="us-east-1")
        settings = provision(base, sqs, sns, boto3.client("kms", region_name="us-east-1"))
        c = Container(settings, clock=clock)
        wiring.set_container(c)
        try:
            yield c
        finally:
            wiring.set_container(None)


@pytest.fixture
def chalice_client(system):
    from app import app

    with Client(app) as client:
        yield client


@pytest.fixture
def api(chalice_client):
    return Api(chalice_client, issue("tenant-a", SECRET))


@pytest.fixture
def other_api(chalice_client):
    return Api(chalice_client, issue("tenant-b", SECRET))


@pytest.fixture
def admin_api(chalice_client):
    return Api(chalice_client, issue("ops", SECRET, scopes="admin"))


@pytest.fixture
def anon_api(chalice_client):
    return Api(chalice_client, None)
