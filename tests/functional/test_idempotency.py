"""Idempotency-Key on create-agent, run-now and backfill, through the app on moto."""
from __future__ import annotations

import json
import logging

import boto3
import pytest

from chalicelib.domain.idempotency import fingerprint
from chalicelib.errors import ValidationError
from tests.functional.test_dispatch import make_agent

KEY = {"Idempotency-Key": "k-0001"}


def control_items(system) -> list[dict]:
    client = boto3.client("dynamodb", region_name=system.settings.region)
    return client.scan(TableName=system.settings.control_table)["Items"]


def idempotency_items(system) -> list[dict]:
    return [i for i in control_items(system) if i["pk"]["S"].startswith("idempotency#")]


def test_create_agent_twice_with_one_key_creates_one_and_replays_the_first_answer(api):
    first = api.post("/api/agents", {"name": "a", "kind": "echo"}, headers=KEY)
    assert first.status_code == 201 and "Idempotent-Replayed" not in first.headers
    again = api.post("/api/agents", {"kind": "echo", "name": "a"}, headers=KEY)  # same JSON, other key order
    assert again.status_code == 201 and again.headers["Idempotent-Replayed"] == "true"
    assert again.json == first.json
    assert [a["id"] for a in api.get("/api/agents").json["items"]] == [first.json["id"]]


def test_the_same_key_with_another_body_is_422_and_changes_nothing(api):
    api.post("/api/agents", {"name": "a", "kind": "echo"}, headers=KEY)
    r = api.post("/api/agents", {"name": "b", "kind": "echo"}, headers=KEY)
    assert r.status_code == 422 and r.json["code"] == "IDEMPOTENCY_KEY_REUSED" and r.json["field"] == "Idempotency-Key"
    assert [a["name"] for a in api.get("/api/agents").json["items"]] == ["a"]


def test_the_same_key_on_another_path_is_422(api):
    aid = make_agent(api)
    assert api.post(f"/api/agents/{aid}/run", {}, headers=KEY).status_code == 202
    r = api.post("/api/agents", {}, headers=KEY)
    assert r.status_code == 422 and r.json["code"] == "IDEMPOTENCY_KEY_REUSED"


def test_keys_are_per_tenant(api, other_api):
    a = api.post("/api/agents", {"name": "a", "kind": "echo"}, headers=KEY)
    b = other_api.post("/api/agents", {"name": "a", "kind": "echo"}, headers=KEY)
    assert b.status_code == 201 and "Idempotent-Replayed" not in b.headers and b.json["id"] != a.json["id"]


def test_an_error_answer_is_not_kept_so_the_key_can_be_retried(api):
    bad = api.post("/api/agents", {"name": "a", "kind": "nope"}, headers=KEY)
    assert bad.status_code == 400
    fixed = api.post("/api/agents", {"name": "a", "kind": "echo"}, headers=KEY)
    assert fixed.status_code == 201 and "Idempotent-Replayed" not in fixed.headers
    missing = api.post("/api/agents/nope/run", {}, headers={"Idempotency-Key": "k-2"})
    assert missing.status_code == 404 and idempotency_items_count(api) == 1


def idempotency_items_count(api) -> int:
    from chalicelib.services import wiring

    return len(idempotency_items(wiring.container()))


def test_a_retried_run_now_starts_one_run(api, system):
    aid = make_agent(api)
    first = api.post(f"/api/agents/{aid}/run", {"input": {"day": 1}}, headers=KEY)
    again = api.post(f"/api/agents/{aid}/run", {"input": {"day": 1}}, headers=KEY)
    assert first.status_code == again.status_code == 202
    assert again.headers["Idempotent-Replayed"] == "true" and again.json["sessionId"] == first.json["sessionId"]
    assert len(api.get(f"/api/agents/{aid}/sessions").json["items"]) == 1
    other = api.post(f"/api/agents/{aid}/run", {"input": {"day": 1}}, headers={"Idempotency-Key": "k-0002"})
    assert other.json["sessionId"] != first.json["sessionId"]  # a new key is a new run
    assert api.post(f"/api/agents/{aid}/run", {}).json["sessionId"] not in (first.json["sessionId"],)  # no key: runs


def test_a_retried_backfill_is_replayed(api, system, clock):
    aid = make_agent(api)
    api.post(f"/api/agents/{aid}/schedule", {"expression": "0 * * * *", "catchup": "NONE"})
    clock.advance(3 * 3600)
    window = {"from": "2026-03-02T12:00:00Z", "to": "2026-03-02T14:59:00Z"}
    first = api.post(f"/api/agents/{aid}/backfill", window, headers=KEY)
    again = api.post(f"/api/agents/{aid}/backfill", window, headers=KEY)
    assert first.json["created"] == 2 and again.json == first.json and again.headers["Idempotent-Replayed"] == "true"
    without_key = api.post(f"/api/agents/{aid}/backfill", window).json  # the route itself: nothing left to create
    assert without_key["created"] == 0


@pytest.mark.parametrize("value", ["", "x" * 256])
def test_a_bad_key_is_400_naming_the_header(api, value):
    r = api.post("/api/agents", {"name": "a", "kind": "echo"}, headers={"Idempotency-Key": value})
    assert r.status_code == 400 and r.json["field"] == "Idempotency-Key" and "Idempotency-Key" in r.json["message"]
    assert api.get("/api/agents").json["items"] == []


def test_a_key_of_255_characters_is_accepted(api):
    assert api.post("/api/agents", {"name": "a", "kind": "echo"}, headers={"Idempotency-Key": "x" * 255}).status_code == 201


def test_a_request_in_flight_holds_its_key_409(system):
    store = system.idempotency
    fp = fingerprint("POST", "/api/agents", {"name": "a"})
    seen = {}

    def first():
        with pytest.raises(Exception) as exc:
            store.call("tenant-a", "k", fp, lambda: (201, {"second": True}))
        seen["error"] = exc.value
        return 201, {"first": True}

    assert store.call("tenant-a", "k", fp, first).body == {"first": True}
    assert getattr(seen["error"], "code", None) == "IDEMPOTENCY_KEY_IN_USE" and seen["error"].status_code == 409


class Crash(BaseException):
    """A request that dies mid-way (the Lambda times out, the process is killed): nothing cleans up."""


def test_a_crashed_request_leaves_its_key_usable_once_its_lease_ran_out(system):
    store = system.idempotency
    fp = fingerprint("POST", "/api/agents", {"name": "a"})

    def crash():
        raise Crash()

    with pytest.raises(Crash):
        store.call("tenant-a", "k", fp, crash, remaining_ms=20_000)
    [record] = idempotency_items(system)
    assert record["status"]["S"] == "INPROGRESS" and int(record["in_progress_expiration"]["N"]) > 0
    with pytest.raises(Exception) as held:
        store.call("tenant-a", "k", fp, lambda: (201, {"n": 2}))
    assert held.value.code == "IDEMPOTENCY_KEY_IN_USE"
    # The lease runs out (its deadline is in the past): the key is free again.
    client = boto3.client("dynamodb", region_name=system.settings.region)
    client.update_item(TableName=system.settings.control_table, Key={"pk": record["pk"]},
                       UpdateExpression="SET in_progress_expiration = :t", ExpressionAttributeValues={":t": {"N": "1000"}})
    got = store.call("tenant-a", "k", fp, lambda: (201, {"n": 3}))
    assert got.body == {"n": 3} and not got.replayed


def test_an_answer_older_than_a_day_is_forgotten(system):
    store = system.idempotency
    fp = fingerprint("POST", "/api/agents", {"name": "a"})
    store.call("tenant-a", "k", fp, lambda: (201, {"n": 1}))
    assert store.call("tenant-a", "k", fp, lambda: (201, {"n": 2})).replayed
    [record] = idempotency_items(system)
    assert int(record["expires_at"]["N"]) - int(record["in_progress_expiration"]["N"]) // 1000 > 23 * 3600
    client = boto3.client("dynamodb", region_name=system.settings.region)
    client.update_item(TableName=system.settings.control_table, Key={"pk": record["pk"]},
                       UpdateExpression="SET expires_at = :t", ExpressionAttributeValues={":t": {"N": "1000"}})
    got = store.call("tenant-a", "k", fp, lambda: (201, {"n": 3}))
    assert got.body == {"n": 3} and not got.replayed


def test_the_stored_answer_is_sealed_and_never_shown(api, system, caplog):
    marker = "marker-7f3a-signing-secret"
    caplog.set_level(logging.INFO)  # (the SDK's DEBUG lines print request bodies: never on in production)
    r = api.post("/api/agents", {"name": "a", "kind": "echo", "config": {"message": marker}}, headers=KEY)
    assert r.status_code == 201
    [record] = idempotency_items(system)
    stored = json.dumps(record)
    assert marker not in stored and "config" not in stored and r.json["id"] not in stored
    assert set(json.loads(record["data"]["S"])) == {"sealed"}
    replay = api.post("/api/agents", {"name": "a", "kind": "echo", "config": {"message": marker}}, headers=KEY)
    assert replay.json["config"]["message"] == marker  # opened again for the caller who made it
    for path in ("/api/agents", "/api/scheduler/status", "/api/dlq", "/api/events"):
        assert "sealed" not in api.get(path).body.decode()
    assert record["data"]["S"][12:40] not in caplog.text and marker not in caplog.text


def test_a_header_with_a_bad_length_is_a_validation_error():
    from chalicelib.domain.idempotency import header_key

    assert header_key({"idempotency-key": "abc"}) == "abc" and header_key({}) is None
    with pytest.raises(ValidationError):
        header_key({"Idempotency-Key": ""})


def test_an_answer_that_is_not_2xx_is_passed_on_and_not_kept(system):
    store = system.idempotency
    fp = fingerprint("POST", "/api/agents", {"name": "a"})
    got = store.call("tenant-a", "k", fp, lambda: (409, {"code": "CONFLICT"}))
    assert (got.status, got.replayed) == (409, False) and idempotency_items(system) == []
    assert store.call("tenant-a", "k", fp, lambda: (201, {"n": 1})).status == 201


def test_an_answer_sealed_before_a_jwt_key_rotation_is_replayed_after_it():
    from cryptography.exceptions import InvalidTag

    from chalicelib.adapters.idempotency import Sealer

    old = "old-secret-of-16+chars"
    sealed = Sealer.from_secret(old).seal(b'{"id": "ag_1"}')
    rotated = json.dumps({"current": "k2", "keys": {"k1": old, "k2": "new-secret-of-16+chars"}})
    assert Sealer.from_secret(rotated).open(sealed) == b'{"id": "ag_1"}'  # the old key is still in the set
    assert Sealer.from_secret(rotated).open(Sealer.from_secret(rotated).seal(b"x")) == b"x"
    with pytest.raises(InvalidTag):  # once the old key is gone, it cannot be read (by then it has expired)
        Sealer.from_secret(json.dumps({"current": "k2", "keys": {"k2": "new-secret-of-16+chars"}})).open(sealed)
