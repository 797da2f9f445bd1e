"""The local system's kept state: snapshot of the tables, restore into new ones, the directory lock."""
from __future__ import annotations

import json
from pathlib import Path

import boto3
import pytest

from chalicelib.adapters import tables
from chalicelib.domain.model import SessionStatus
from local.state import STATE_FILE, Snapshotter, StateDir, StateError, restore, snapshot, state_dir_from_env
from tests.functional.test_dispatch import make_agent


def ddb(system):
    return boto3.client("dynamodb", region_name=system.settings.region)


def recreate_tables(system) -> None:
    """What a restart of the emulator leaves: the same tables, empty."""
    client = ddb(system)
    for name in client.list_tables()["TableNames"]:
        client.delete_table(TableName=name)
    tables.create_tables()


def test_every_agent_schedule_session_and_the_pause_come_back(api, admin_api, system, tmp_path):
    aid = make_agent(api, "report", labels={"team": "ops"})
    api.post(f"/api/agents/{aid}/schedule", {"expression": "30 9 * * MON-FRI", "timezone": "America/New_York"})
    run = api.post(f"/api/agents/{aid}/run", {"input": {"n": 1}}, headers={"Idempotency-Key": "k1"}).json
    assert admin_api.post("/api/scheduler/pause").status_code == 200
    before = {"agent": api.get(f"/api/agents/{aid}").json, "sessions": api.get(f"/api/agents/{aid}/sessions").json,
              "history": api.get(f"/api/agents/{aid}/schedule/history").json}
    state = StateDir(tmp_path / "state")
    state.save(snapshot(ddb(system), skip=frozenset({system.settings.connections_table})))
    recreate_tables(system)
    assert api.get("/api/agents").json["items"] == []
    counts = restore(ddb(system), state.load())
    assert counts[system.settings.agents_table] >= 1 and system.settings.connections_table not in counts
    assert api.get(f"/api/agents/{aid}").json == before["agent"]
    assert api.get(f"/api/agents/{aid}/sessions").json == before["sessions"]
    assert api.get(f"/api/agents/{aid}/schedule/history").json == before["history"]
    assert api.get("/api/scheduler/status").json["paused"] is True
    again = api.post(f"/api/agents/{aid}/run", {"input": {"n": 1}}, headers={"Idempotency-Key": "k1"})
    assert again.headers["Idempotent-Replayed"] == "true" and again.json["sessionId"] == run["sessionId"]


def test_a_run_that_held_a_lease_is_recovered_at_once_after_a_restore(api, system, tmp_path):
    aid = make_agent(api)
    sid = api.post(f"/api/agents/{aid}/run", {}).json["sessionId"]
    admitted = system.sessions.get(aid, sid)
    assert admitted.stage == "ADMITTED" and admitted.run_lease_until > system.clock.now().timestamp()
    data = json.loads(json.dumps(snapshot(ddb(system))))
    recreate_tables(system)
    restore(ddb(system), data)
    # The process that held the lease is gone: the lease has run out, the sweep sends the run again.
    assert system.sessions.get(aid, sid).run_lease_until == 0
    system.work_queue.client.purge_queue(QueueUrl=system.settings.work_queue_url)  # its message went with moto
    assert system.dispatcher.recover(system.clock.now().timestamp()) == 1
    [msg] = system.work_queue.client.receive_message(QueueUrl=system.settings.work_queue_url,
                                                     MaxNumberOfMessages=10)["Messages"]
    system.worker.handle(json.loads(msg["Body"]))
    assert system.sessions.get(aid, sid).status is SessionStatus.SUCCEEDED


def test_the_event_heads_forget_the_connections_of_the_old_process(system):
    client = ddb(system)
    client.put_item(TableName=system.settings.events_table,
                    Item={"tenant_id": {"S": "t"}, "seq": {"N": "0"}, "last_seq": {"N": "7"},
                          "subs": {"M": {"c1": {"L": []}}}, "live_from": {"M": {"c1": {"N": "3"}}}})
    data = snapshot(client)
    recreate_tables(system)
    restore(client, data)
    head = client.get_item(TableName=system.settings.events_table, Key={"tenant_id": {"S": "t"}, "seq": {"N": "0"}})["Item"]
    assert head == {"tenant_id": {"S": "t"}, "seq": {"N": "0"}, "last_seq": {"N": "7"}}


def test_snapshots_replace_the_file_whole_and_a_last_one_is_taken_at_stop(tmp_path):
    state = StateDir(tmp_path)
    taken = iter(range(100))
    snaps = Snapshotter(state, lambda: {"format": 1, "n": next(taken)}, interval=3600)
    snaps.start()
    assert snaps.stop() and json.loads((tmp_path / STATE_FILE).read_text()) == {"format": 1, "n": 0}
    assert [p.name for p in tmp_path.iterdir()] == [STATE_FILE]  # no temporary file left
    assert (tmp_path / STATE_FILE).stat().st_mode & 0o777 == 0o600  # agent configs hold secrets


def test_a_failed_snapshot_keeps_the_last_good_one(tmp_path):
    state = StateDir(tmp_path)
    state.save({"format": 1, "good": True})

    def broken():
        raise RuntimeError("emulator gone")

    assert not Snapshotter(state, broken).save_now()
    assert state.load() == {"format": 1, "good": True}


def test_one_system_per_directory_and_reset_waits_for_it(tmp_path):
    first = StateDir(tmp_path / "s")
    first.lock()
    try:
        with pytest.raises(StateError, match="in use"):
            StateDir(tmp_path / "s").lock()
        with pytest.raises(StateError, match="in use"):
            StateDir(tmp_path / "s").reset()
        first.save({"format": 1})
    finally:
        first.unlock()
    assert StateDir(tmp_path / "s").reset() == [STATE_FILE]
    assert StateDir(tmp_path / "s").load() is None


def test_a_damaged_file_stops_start_up_with_a_hint(tmp_path):
    (tmp_path / STATE_FILE).write_text("{not json")
    with pytest.raises(StateError, match="make reset"):
        StateDir(tmp_path).load()


def test_the_directory_setting(tmp_path):
    assert state_dir_from_env({}, tmp_path) == tmp_path / ".local/state"
    assert state_dir_from_env({"SCHEDULER_LOCAL_STATE_DIR": " "}, tmp_path) is None
    assert state_dir_from_env({"SCHEDULER_LOCAL_STATE_DIR": "/x/y"}, tmp_path) == Path("/x/y")
    assert state_dir_from_env({"SCHEDULER_LOCAL_STATE_DIR": "kept"}, tmp_path) == tmp_path / "kept"
