"""A restore keeps an async attempt's lease: its agent, not the stopped process, holds it."""
from __future__ import annotations

from local.state import restore, snapshot
from tests.functional.test_dispatch import make_agent
from tests.functional.test_local_state import ddb, recreate_tables


def test_an_async_attempt_keeps_its_lease_and_other_runs_lose_theirs(api, system):
    aid = make_agent(api)
    waiting = api.post(f"/api/agents/{aid}/run", {}).json["sessionId"]
    accepted = api.post(f"/api/agents/{aid}/run", {}).json["sessionId"]
    client = ddb(system)
    table = system.settings.sessions_table
    lease = system.clock.now().timestamp() + 120
    [item] = [i for i in client.scan(TableName=table)["Items"] if i.get("session_id", {}).get("S") == accepted]
    key = {k: item[k] for k in ("agent_id", "session_id") if k in item}
    # as the worker leaves an attempt whose agent answered 202: RUNNING, async, leased to its heartbeat
    client.update_item(TableName=table, Key=key, UpdateExpression="SET is_async = :t, run_lease_until = :l",
                       ExpressionAttributeValues={":t": {"BOOL": True}, ":l": {"N": str(lease)}})
    data = snapshot(client)
    recreate_tables(system)
    restore(client, data)
    assert system.sessions.get(aid, accepted).run_lease_until == lease
    assert system.sessions.get(aid, waiting).run_lease_until == 0
