"""Flow control on moto: agent limits, pools, keyed counters, waiting reasons."""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest

from chalicelib.domain.admission import agent_key, pool_key, tenant_key
from tests.functional.helpers import take, work
from tests.functional.test_dispatch import make_agent

TENANT = "tenant-a"


def run_now(api, aid, **body):
    r = api.post(f"/api/agents/{aid}/run", body)
    assert r.status_code == 202, r.body
    return r.json


def session(api, aid, sid):
    return api.get(f"/api/agents/{aid}/sessions/{sid}").json


def counters(system, *keys):
    got = system.pools.counters(keys)
    return [got.get(k, 0) for k in keys]


def put_pool(api, name, **body):
    r = api.call("PUT", f"/api/pools/{name}", body)
    assert r.status_code == 200, r.body
    return r.json


# --- validation -------------------------------------------------------------------------------
@pytest.mark.parametrize("body, field", [
    ({"maxConcurrency": 0}, "maxConcurrency"),
    ({"maxConcurrency": 1001}, "maxConcurrency"),
    ({"maxConcurrency": "2"}, "maxConcurrency"),
    ({"throttle": {"limit": 1}}, "throttle.periodSeconds"),
    ({"throttle": {"limit": 0, "periodSeconds": 10}}, "throttle.limit"),
    ({"throttle": {"limit": 5, "periodSeconds": 86401}}, "throttle.periodSeconds"),
    ({"throttle": {"limit": 5, "periodSeconds": 10, "burst": 1}}, "throttle.burst"),
    ({"pools": ["nope"]}, "pools"),
    ({"pools": ["a", "b", "c", "d", "e"]}, "pools"),
    ({"pools": ["bad name"]}, "pools"),
    ({"pools": "gpu"}, "pools"),
])
def test_bad_limits_are_400s_naming_the_field(api, body, field):
    r = api.post("/api/agents", {"name": "x", "kind": "echo", **body})
    assert r.status_code == 400, r.body
    assert r.json["field"] == field and r.json["code"]


@pytest.mark.parametrize("name, body, field", [
    ("bad name", {}, "name"),
    ("x" * 65, {}, "name"),
    ("ok", {"maxConcurrency": 0}, "maxConcurrency"),
    ("ok", {"throttle": {"periodSeconds": 5}}, "throttle.limit"),
    ("ok", {"size": 3}, "size"),
])
def test_bad_pools_are_400s_naming_the_field(api, name, body, field):
    r = api.call("PUT", f"/api/pools/{name}", body)
    assert r.status_code == 400, r.body
    assert r.json["field"] == field


def test_limits_on_create_and_patch_and_null_removes_them(api):
    put_pool(api, "gpu", maxConcurrency=2)
    aid = make_agent(api, maxConcurrency=2, throttle={"limit": 10, "periodSeconds": 60}, pools=["gpu"])
    a = api.get(f"/api/agents/{aid}").json
    assert a["maxConcurrency"] == 2 and a["throttle"] == {"limit": 10, "periodSeconds": 60} and a["pools"] == ["gpu"]
    r = api.patch(f"/api/agents/{aid}", {"maxConcurrency": None, "throttle": None, "pools": None})
    assert r.status_code == 200, r.body
    assert (r.json["maxConcurrency"], r.json["throttle"], r.json["pools"]) == (None, None, [])
    r = api.patch(f"/api/agents/{aid}", {"name": "renamed"})
    assert r.json["maxConcurrency"] is None


# --- pools ---------------------------------------------------------------------------------------
def test_pool_crud_and_delete_is_409_while_an_agent_names_it(api, other_api):
    p = put_pool(api, "openai-key", maxConcurrency=3, throttle={"limit": 100, "periodSeconds": 60})
    assert p["name"] == "openai-key" and p["maxConcurrency"] == 3 and p["running"] == 0 and p["blockedUntil"] is None
    assert [x["name"] for x in api.get("/api/pools").json["items"]] == ["openai-key"]
    assert other_api.get("/api/pools").json["items"] == []
    assert other_api.get("/api/pools/openai-key").status_code == 404
    aid = make_agent(api, pools=["openai-key"])
    r = api.delete("/api/pools/openai-key")
    assert r.status_code == 409 and aid in r.json["message"]
    assert api.patch(f"/api/agents/{aid}", {"pools": []}).status_code == 200
    assert api.delete("/api/pools/openai-key").status_code == 204
    assert api.get("/api/pools/openai-key").status_code == 404
    assert api.get("/api/pools").json["items"] == []
    p = put_pool(api, "openai-key")  # again, without limits: a pool that limits nothing yet
    assert p["maxConcurrency"] is None and p["throttle"] is None


# --- admission with limits ----------------------------------------------------------------------
def test_max_concurrency_one_with_run_now_three_times_runs_them_one_after_another(api, system):
    aid = make_agent(api, maxConcurrency=1)
    ids = [run_now(api, aid)["sessionId"] for _ in range(3)]
    sent = take(system)
    assert [m.body["s"] for m in sent] == ids[:1]
    for sid in ids[1:]:
        s = session(api, aid, sid)
        assert s["status"] == "QUEUED" and s["waitingReason"] == "AGENT_CONCURRENCY" and s["waitingFor"] is None
    assert counters(system, agent_key(TENANT, aid)) == [1]
    # the two that waited were asked for at the same instant: they start in session-id order
    for sid in [ids[0], *sorted(ids[1:])]:
        assert [m.body["s"] for m in sent] == [sid]
        assert work(system, sent) == ["succeeded"]
        sent = take(system)
    assert sent == []
    assert all(session(api, aid, sid)["status"] == "SUCCEEDED" for sid in ids)
    assert counters(system, agent_key(TENANT, aid), tenant_key(TENANT)) == [0, 0]


def test_two_agents_in_a_pool_of_one_never_overlap_and_the_waiting_one_says_why(api, system):
    put_pool(api, "gpu", maxConcurrency=1)
    a = make_agent(api, name="a", pools=["gpu"])
    b = make_agent(api, name="b", pools=["gpu"])
    sa = run_now(api, a)["sessionId"]
    rb = run_now(api, b)
    assert rb["waitingReason"] == "POOL_LIMIT" and rb["waitingFor"] == "gpu"
    s = session(api, b, rb["sessionId"])
    assert s["waitingReason"] == "POOL_LIMIT" and s["waitingFor"] == "gpu"
    assert api.get("/api/pools/gpu").json["running"] == 1
    sent = take(system)
    assert [m.body["s"] for m in sent] == [sa]
    assert work(system, sent) == ["succeeded"]
    sent = take(system)  # handed to b as a ends
    assert [m.body["s"] for m in sent] == [rb["sessionId"]]
    assert session(api, b, rb["sessionId"])["waitingReason"] is None
    assert work(system, sent) == ["succeeded"]
    assert api.get("/api/pools/gpu").json["running"] == 0
    assert counters(system, pool_key(TENANT, "gpu"), tenant_key(TENANT)) == [0, 0]


def test_pool_counters_stay_exact_under_concurrent_finishes(api, system):
    put_pool(api, "shared", maxConcurrency=3)
    agents = [make_agent(api, name=f"a{i}", pools=["shared"]) for i in range(4)]
    for aid in agents:
        for _ in range(3):
            run_now(api, aid)
    seen_max = 0
    done: list[str] = []
    for _ in range(20):
        sent = take(system)
        if not sent:
            break
        held = counters(system, pool_key(TENANT, "shared"))[0]
        seen_max = max(seen_max, held)
        assert held <= 3 and len(sent) <= 3
        with ThreadPoolExecutor(max_workers=len(sent)) as pool:
            done += list(pool.map(lambda m: system.worker.handle(m.body), sent))
        if not take_peek(system):
            system.dispatcher.admit()
    assert done.count("succeeded") == 12
    assert seen_max == 3
    assert counters(system, pool_key(TENANT, "shared"), tenant_key(TENANT)) == [0, 0]
    assert sum(system.runs.holders(s.name) for s in system.runs.slots(system.settings.max_concurrent_agents)) == 0


def take_peek(system):
    from tests.functional.helpers import peek

    return peek(system)


def test_a_blocked_pool_admits_nothing_until_blocked_until(api, system, clock):
    put_pool(api, "provider", maxConcurrency=5)
    a = make_agent(api, name="a", pools=["provider"])
    other = make_agent(api, name="free")
    now = clock.now().timestamp()
    assert system.pool_service.block(TENANT, ["provider"], now + 30) == 1
    assert system.pool_service.block(TENANT, ["provider"], now + 10) == 0  # never moves earlier
    assert api.get("/api/pools/provider").json["blockedUntil"] is not None
    r = run_now(api, a)
    assert r["waitingReason"] == "RATE_LIMITED" and r["waitingFor"] == "provider"
    assert run_now(api, other)["waitingReason"] is None  # an agent outside the pool starts
    assert [m.body["a"] for m in take(system)] == [other]
    clock.advance(31)
    assert api.get("/api/pools/provider").json["blockedUntil"] is None
    assert system.dispatcher.admit() == 1
    assert [m.body["s"] for m in take(system)] == [r["sessionId"]]


def test_throttle_spaces_starts_and_the_waiting_run_says_throttled(api, system, clock):
    # T0 is 11:59:30: the hour's window has room for one start, the next window (12:00) starts
    # within the lookahead, so the second run is admitted for 12:00 and the third waits.
    aid = make_agent(api, throttle={"limit": 1, "periodSeconds": 3600})
    first, second, third = (run_now(api, aid) for _ in range(3))
    assert (first["waitingReason"], second["waitingReason"], third["waitingReason"]) == (None, None, "THROTTLED")
    sent = {m.body["s"]: m for m in take(system)}
    assert set(sent) == {first["sessionId"], second["sessionId"]}
    assert sent[first["sessionId"]].delay_seconds == 0
    assert sent[second["sessionId"]].delay_seconds == 29  # 12:00:00, one second of slack
    assert sent[second["sessionId"]].body["e"] == clock.now().timestamp() + 30
    assert session(api, aid, third["sessionId"])["waitingReason"] == "THROTTLED"
    clock.advance(30 + 3600 - 60)  # 12:59:00: the 13:00 window is within the lookahead
    assert system.dispatcher.admit() == 1
    assert [m.body["s"] for m in take(system)] == [third["sessionId"]]


@pytest.mark.parametrize("settings_overrides", [{"tenant_max_concurrent": 1}])
def test_tenant_cap_holds_one_tenant_and_not_the_other(api, other_api, system):
    a = make_agent(api, name="a")
    b = make_agent(other_api, name="b")
    run_now(api, a)
    held = run_now(api, a)
    assert held["waitingReason"] == "TENANT_LIMIT"
    assert run_now(other_api, b)["waitingReason"] is None
    assert counters(system, tenant_key(TENANT), tenant_key("tenant-b")) == [1, 1]


def test_run_now_while_paused_says_scheduler_paused(api, admin_api, system):
    aid = make_agent(api)
    assert admin_api.post("/api/scheduler/pause").status_code == 200
    r = run_now(api, aid)
    assert r["status"] == "QUEUED" and r["waitingReason"] == "SCHEDULER_PAUSED"
    assert session(api, aid, r["sessionId"])["waitingReason"] == "SCHEDULER_PAUSED"
    assert take(system) == []


def test_cancel_of_an_admitted_run_gives_its_keys_back(api, system):
    put_pool(api, "p", maxConcurrency=2)
    aid = make_agent(api, maxConcurrency=2, pools=["p"])
    sid = run_now(api, aid)["sessionId"]
    assert counters(system, agent_key(TENANT, aid), pool_key(TENANT, "p")) == [1, 1]
    assert api.post(f"/api/agents/{aid}/sessions/{sid}/cancel").status_code == 202
    assert counters(system, agent_key(TENANT, aid), pool_key(TENANT, "p"), tenant_key(TENANT)) == [0, 0, 0]


def test_the_reconciler_repairs_a_keyed_counter_seen_wrong_twice(api, system):
    put_pool(api, "p", maxConcurrency=3)
    aid = make_agent(api, pools=["p"])
    run_now(api, aid)  # admitted: holds the pool, the tenant
    key = pool_key(TENANT, "p")
    from chalicelib.adapters.tables import ControlModel

    ControlModel(key).update(actions=[ControlModel.used.set(3)])  # a leak (say, a bug's lost release)
    assert system.dispatcher.reconcile_keys() == 0  # seen once: noted
    assert counters(system, key) == [3]
    assert system.dispatcher.reconcile_keys() == 1  # seen twice, unchanged: repaired
    assert counters(system, key, tenant_key(TENANT)) == [1, 1]
    assert system.dispatcher.reconcile_keys() == 0


@pytest.mark.parametrize("settings_overrides", [{"max_concurrent_agents": 1}])
def test_a_hand_off_gives_back_the_keys_the_next_run_does_not_hold_and_takes_its_own(api, system):
    put_pool(api, "p", maxConcurrency=1)
    x = make_agent(api, name="x", maxConcurrency=1)
    y = make_agent(api, name="y", pools=["p"])
    sx = run_now(api, x)["sessionId"]
    ry = run_now(api, y)
    assert ry["waitingReason"] == "CAPACITY"
    assert counters(system, agent_key(TENANT, x), pool_key(TENANT, "p"), tenant_key(TENANT)) == [1, 0, 1]
    sent = take(system)
    assert [m.body["s"] for m in sent] == [sx]
    assert work(system, sent) == ["succeeded"]
    sent = take(system)  # the slot went straight to y: x's agent key given back, the pool taken
    assert [m.body["s"] for m in sent] == [ry["sessionId"]]
    assert counters(system, agent_key(TENANT, x), pool_key(TENANT, "p"), tenant_key(TENANT)) == [0, 1, 1]
    assert work(system, sent) == ["succeeded"]
    assert counters(system, agent_key(TENANT, x), pool_key(TENANT, "p"), tenant_key(TENANT)) == [0, 0, 0]


@pytest.mark.parametrize("settings_overrides", [{"max_concurrent_agents": 2}])
def test_a_run_whose_pool_is_full_does_not_take_the_hand_off_and_the_next_allowed_run_does(api, system):
    put_pool(api, "p", maxConcurrency=1)
    a = make_agent(api, name="a", pools=["p"])
    b = make_agent(api, name="b", pools=["p"])
    c = make_agent(api, name="c")
    sa = run_now(api, a)["sessionId"]
    sc = run_now(api, c)["sessionId"]
    rb = run_now(api, b)  # the pool is full (a holds it); so is the cap, and the cap is what it reports
    rc2 = run_now(api, c)  # behind b, allowed
    assert rb["waitingReason"] == "CAPACITY" and rc2["waitingReason"] == "CAPACITY"
    sent = {m.body["s"]: m for m in take(system)}
    assert set(sent) == {sa, sc}
    assert work(system, [sent[sc]]) == ["succeeded"]  # c ends first: b may not start (a holds the pool)
    assert [m.body["s"] for m in take(system)] == [rc2["sessionId"]]
    assert session(api, b, rb["sessionId"])["status"] == "QUEUED"
    assert counters(system, pool_key(TENANT, "p"), tenant_key(TENANT)) == [1, 2]


@pytest.mark.parametrize("settings_overrides", [{"max_concurrent_agents": 1, "priority_aging_seconds": 600}])
def test_a_low_run_that_aged_behind_a_deep_normal_backlog_starts_at_the_tick(api, system, clock):
    # The head of the pending order is read in stored priority (a few dozen runs): 40 NORMAL
    # runs asked for after the LOW one hide it there. Twenty minutes later the LOW run ranks
    # HIGH; the tick also reads the oldest runs of each priority that ages, so it starts first.
    system.dispatcher.set_paused(True)
    aid = make_agent(api)
    low = run_now(api, aid, priority="LOW")["sessionId"]
    clock.advance(1)
    backlog = [run_now(api, aid, priority="NORMAL")["sessionId"] for _ in range(40)]
    clock.advance(1200)
    state = system.control.state()
    system.control.set_paused(False, state.pauses)  # resumed: the next admission is the tick's
    system.dispatcher.tick()
    assert [m.body["s"] for m in take(system)] == [low]
    assert all(session(api, aid, sid)["status"] == "QUEUED" for sid in backlog)
