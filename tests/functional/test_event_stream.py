"""The event stream on moto: seq order, the replay seam, retention by TTL, tenant
isolation, tickets, GET /api/events and the new events (agent:skipped, schedule:changed).

WebSocket handlers run in-process; a recording pusher stands in for the management
API (the local gateway's real one is exercised in tests/e2e)."""
from __future__ import annotations

import json
from datetime import timedelta

import pytest

from chalicelib.adapters.events_store import HEAD_SEQ, HOLD_SECONDS
from chalicelib.adapters.tables import EventModel
from chalicelib.api.auth import issue
from chalicelib.domain import events as ev
from chalicelib.services import ws
from tests.conftest import T0
from tests.functional.conftest import SECRET
from tests.functional.helpers import take, work

WS_ENDPOINT = "http://ws.test"


class RecordingPusher:
    """Records what each connection receives, in order; ``gone`` ids answer 410;
    ``on_send(cid, payload)`` runs before each frame (to interleave other publishers)."""

    def __init__(self) -> None:
        self.frames: dict[str, list[dict]] = {}
        self.gone: set[str] = set()
        self.closed: list[str] = []
        self.on_send = None

    def _one(self, cid: str, payload: dict) -> str:
        if self.on_send is not None:
            hook, self.on_send = self.on_send, None  # no recursion through the hook's own publish
            try:
                hook(cid, payload)
            finally:
                self.on_send = hook
        if cid in self.gone:
            return "gone"
        self.frames.setdefault(cid, []).append(json.loads(json.dumps(payload)))
        return "ok"

    def push(self, ids, payload):
        return [cid for cid in ids if self._one(cid, payload) == "gone"]

    def send_in_order(self, cid, payloads):
        for p in payloads:
            if self._one(cid, p) == "gone":
                return "gone"
        return "ok"

    def close(self, cid):
        self.closed.append(cid)

    def events(self, cid: str) -> list[dict]:
        return [f for f in self.frames.get(cid, []) if "seq" in f]

    def names(self, cid: str) -> list[str]:
        return [f["event"] for f in self.frames.get(cid, [])]


@pytest.fixture
def settings_overrides():
    return {"ws_endpoint": WS_ENDPOINT}


@pytest.fixture
def pusher(system):
    p = RecordingPusher()
    system.__dict__["pusher"] = p
    return p


def connect(system, cid: str, tenant: str = "tenant-a", **params) -> dict:
    if not params:
        params = {"token": issue(tenant, SECRET)}
    return ws.on_connect(system, {"requestContext": {"connectionId": cid}, "queryStringParameters": params})


def send(system, cid: str, message: dict) -> dict:
    return ws.on_message(system, {"requestContext": {"connectionId": cid}, "body": json.dumps(message)})


def publish(system, n: int, tenant: str = "tenant-a", agent: str = "agent-1") -> list[int]:
    seqs = []
    for i in range(n):
        payload = ev.progress(agent, f"s-{agent}", 1, now=system.clock.now().timestamp(), percent=i, message=f"m{i}")
        system.events.publish(tenant, agent, payload)
        seqs.append(payload["seq"])
    return seqs


def make_agent(api, name="a", **extra) -> str:
    resp = api.post("/api/agents", {"name": name, "kind": "echo", **extra})
    assert resp.status_code == 201, resp.json
    return resp.json["id"]


# --- order, ids, paging ----------------------------------------------------------------------
def test_every_event_gets_a_strictly_increasing_seq_and_an_id_and_is_stored_once(api, system, pusher):
    assert publish(system, 5) == [1, 2, 3, 4, 5]
    page = api.get("/api/events?since=0&limit=500").json
    assert [e["seq"] for e in page["items"]] == [1, 2, 3, 4, 5]
    assert len({e["id"] for e in page["items"]}) == 5
    assert page["nextSince"] == 5 and "oldestSeq" not in page
    assert [e["data"]["message"] for e in page["items"]] == ["m0", "m1", "m2", "m3", "m4"]
    # one item per event, whatever the number of connections
    for cid in ("c1", "c2", "c3"):
        connect(system, cid)
        send(system, cid, {"action": "subscribe", "agentIds": ["*"]})
    publish(system, 1)
    stored = list(EventModel.query("tenant-a", EventModel.seq > HEAD_SEQ))
    assert [int(m.seq) for m in stored] == [1, 2, 3, 4, 5, 6]
    assert all(pusher.events(cid)[-1]["seq"] == 6 for cid in ("c1", "c2", "c3"))


def test_get_events_pages_with_next_since_and_refuses_bad_parameters(api, system, pusher):
    publish(system, 7)
    first = api.get("/api/events?since=0&limit=3").json
    assert [e["seq"] for e in first["items"]] == [1, 2, 3] and first["nextSince"] == 3
    second = api.get(f"/api/events?since={first['nextSince']}&limit=3").json
    assert [e["seq"] for e in second["items"]] == [4, 5, 6]
    last = api.get("/api/events?since=7").json
    assert last == {"items": [], "nextSince": 7}
    for query, field in (("limit=0", "limit"), ("limit=501", "limit"), ("since=-1", "since"), ("since=x", "since"),
                         ("after=1", "after")):
        resp = api.get(f"/api/events?{query}")
        assert resp.status_code == 400, query
        assert resp.json["field"] == field and field in resp.json["message"]


def test_tenants_have_their_own_seq_and_never_see_each_others_events(api, other_api, system, pusher):
    publish(system, 3, tenant="tenant-a")
    assert publish(system, 2, tenant="tenant-b", agent="agent-b") == [1, 2]
    a = api.get("/api/events").json["items"]
    b = other_api.get("/api/events").json["items"]
    assert {e["data"]["agentId"] for e in a} == {"agent-1"} and len(a) == 3
    assert {e["data"]["agentId"] for e in b} == {"agent-b"} and len(b) == 2
    connect(system, "ca", "tenant-a")
    connect(system, "cb", "tenant-b")
    send(system, "ca", {"action": "subscribe", "agentIds": ["*"], "since": 0})
    send(system, "cb", {"action": "subscribe", "agentIds": ["*"], "since": 0})
    assert [e["data"]["agentId"] for e in pusher.events("ca")] == ["agent-1"] * 3
    assert [e["data"]["agentId"] for e in pusher.events("cb")] == ["agent-b"] * 2


def test_unauthenticated_polling_is_refused(anon_api):
    assert anon_api.get("/api/events").status_code == 401
    assert anon_api.post("/api/events/ticket").status_code == 401


# --- retention -------------------------------------------------------------------------------
def test_events_expire_after_the_retention_and_a_late_resume_gets_resync(api, system, clock, pusher):
    publish(system, 2)  # seq 1, 2 at T0
    m = EventModel.get("tenant-a", 1)
    assert m.expires_at == T0.replace(microsecond=0) + timedelta(hours=24)  # SCHEDULER_EVENT_RETENTION_HOURS default
    clock.advance(12 * 3600)
    publish(system, 2)  # seq 3, 4 at T0 + 12 h
    clock.advance(12 * 3600 + 1)  # 1, 2 are past their retention (DynamoDB may not have deleted them yet)
    page = api.get("/api/events?since=0").json
    assert [e["seq"] for e in page["items"]] == [3, 4] and page["oldestSeq"] == 3
    assert "oldestSeq" not in api.get("/api/events?since=2").json  # nothing missed after 2
    connect(system, "c1")
    send(system, "c1", {"action": "subscribe", "agentIds": ["*"], "since": 0})
    assert pusher.names("c1")[:2] == ["subscribed", "resync"]
    assert pusher.frames["c1"][1]["data"] == {"oldestSeq": 3}
    assert [e["seq"] for e in pusher.events("c1")] == [3, 4]
    clock.advance(12 * 3600)  # everything expired: a resume from 4 misses nothing
    connect(system, "c2")
    send(system, "c2", {"action": "subscribe", "agentIds": ["*"], "since": 4})
    assert pusher.names("c2") == ["subscribed"]
    connect(system, "c3")  # ... from 1 it missed 2..4, none of them kept
    send(system, "c3", {"action": "subscribe", "agentIds": ["*"], "since": 1})
    assert pusher.frames["c3"][1] == {**pusher.frames["c3"][1], "event": "resync", "data": {"oldestSeq": 5}}


def test_the_retention_setting_sets_the_ttl_attribute(system, clock):
    from chalicelib.adapters.events_store import EventStore
    from chalicelib.settings import Settings

    assert Settings.from_env({"SCHEDULER_EVENT_RETENTION_HOURS": "2"}).event_retention_hours == 2
    store = EventStore(2)
    store.put("tenant-x", [{"event": "e", "data": {}, "seq": 1, "id": "i", "timestamp": None}], clock.now().timestamp())
    assert EventModel.get("tenant-x", 1).expires_at == T0.replace(microsecond=0) + timedelta(hours=2)
    assert store.read("tenant-x", 0, clock.now().timestamp() + 7199, limit=10) != []
    assert store.read("tenant-x", 0, clock.now().timestamp() + 7200, limit=10) == []


# --- the replay seam ---------------------------------------------------------------------------
def test_resume_replays_missed_matching_events_in_order_then_goes_live(api, system, pusher):
    publish(system, 2, agent="agent-1")  # 1, 2
    publish(system, 2, agent="agent-2")  # 3, 4
    publish(system, 1, agent="agent-1")  # 5
    connect(system, "c1")
    aid = "agent-1"
    # subscribe checks agents exist: use "*" for the stored ids, then a filtered resume below
    send(system, "c1", {"action": "subscribe", "agentIds": ["*"], "since": 1})
    frames = pusher.frames["c1"]
    assert frames[0]["event"] == "subscribed" and frames[0]["data"]["lastSeq"] == 5
    assert [e["seq"] for e in pusher.events("c1")] == [2, 3, 4, 5]
    publish(system, 1, agent=aid)  # live
    assert [e["seq"] for e in pusher.events("c1")] == [2, 3, 4, 5, 6]
    head = EventModel.get("tenant-a", HEAD_SEQ)
    assert head.live_from.as_dict()["c1"] == 5


def test_replay_keeps_only_the_subscribed_agents(api, system, pusher):
    a1 = make_agent(api, "one")
    a2 = make_agent(api, "two")
    publish(system, 2, agent=a1)
    publish(system, 2, agent=a2)
    system.events.publish("tenant-a", None, ev.scheduler_status({"running": 0}, system.clock.now().timestamp()))
    connect(system, "c1")
    send(system, "c1", {"action": "subscribe", "agentIds": [a2], "since": 0})
    got = pusher.events("c1")
    assert [(e["seq"], e["event"]) for e in got] == [(3, "agent:progress"), (4, "agent:progress"), (5, "scheduler:status")]


def test_events_numbered_during_the_replay_arrive_once_in_order_with_no_gap(api, system, pusher):
    """Other publishers keep numbering events while the replay is being sent: the
    connection gets every event exactly once and in seq order."""
    publish(system, 3)  # 1..3 before the resume
    connect(system, "c1")
    fired = []

    def busy_publisher(cid, payload):
        # While the replay sends, another process publishes (twice, on the first two replayed frames).
        if cid == "c1" and payload.get("seq") in (2, 3) and len(fired) < 2:
            fired.append(payload["seq"])
            publish(system, 1)

    pusher.on_send = busy_publisher
    send(system, "c1", {"action": "subscribe", "agentIds": ["*"], "since": 1})
    pusher.on_send = None
    publish(system, 2)  # live after the seam
    seqs = [e["seq"] for e in pusher.events("c1")]
    assert seqs == [2, 3, 4, 5, 6, 7], seqs
    assert fired == [2, 3]


def test_a_publisher_that_numbered_its_event_before_the_hold_does_not_duplicate_it(api, system, pusher):
    """The head read with the seq decides: numbered before the subscription, the event is
    the replay's; the live path skips the connection even if it reads the new subscription."""
    publish(system, 1)
    head_before = system.event_store.allocate("tenant-a")  # seq 2 taken, not stored yet (mid-publish)
    connect(system, "c1")
    payload = ev.progress("agent-1", "s", 1, now=system.clock.now().timestamp(), percent=1, message="late")
    payload["seq"], payload["id"] = head_before.last_seq, "late-id"

    sleeps = []

    def finish_the_publish(seconds):  # the replay waits for seq 2: the publisher stores it meanwhile
        sleeps.append(seconds)
        system.event_store.put("tenant-a", [payload], system.clock.now().timestamp())

    system.events._sleep = finish_the_publish
    send(system, "c1", {"action": "subscribe", "agentIds": ["*"], "since": 0})
    assert len(sleeps) == 1
    # the late publisher now fans out with the head it read when it took seq 2: c1 is not in it
    assert "c1" not in head_before.receivers(2, "agent-1", system.clock.now().timestamp())
    assert [e["seq"] for e in pusher.events("c1")] == [1, 2]


def test_while_a_replay_holds_the_connection_live_events_skip_it(system, clock):
    store = system.event_store
    now = clock.now().timestamp()
    store.follow("tenant-a", "c1", ["*"], held_at=now)
    head = store.allocate("tenant-a")
    assert head.live_from["c1"] < 0 and head.receivers(head.last_seq, "x", now) == []
    # a hold whose replay died long ago does not silence the connection forever
    assert head.receivers(head.last_seq, "x", now + HOLD_SECONDS) == ["c1"]
    assert store.go_live("tenant-a", "c1", head.last_seq - 1, only_if_last=True) is None  # one more came
    live = store.go_live("tenant-a", "c1", head.last_seq, only_if_last=True)
    assert live is not None
    nxt = store.allocate("tenant-a")
    assert nxt.receivers(nxt.last_seq, "x", now) == ["c1"]


def test_a_gone_connection_is_forgotten_and_the_others_still_get_the_event(api, system, pusher):
    for cid in ("c1", "c2", "c3"):
        connect(system, cid)
        send(system, cid, {"action": "subscribe", "agentIds": ["*"]})
    pusher.gone.add("c2")
    publish(system, 1)
    assert [e["seq"] for e in pusher.events("c1")] == [1] and [e["seq"] for e in pusher.events("c3")] == [1]
    assert system.connections.get("c2") is None
    assert "c2" not in EventModel.get("tenant-a", HEAD_SEQ).subs.as_dict()


def test_disconnect_removes_the_connection_from_the_stream(api, system, pusher):
    connect(system, "c1")
    send(system, "c1", {"action": "subscribe", "agentIds": ["*"], "since": 0})
    ws.on_disconnect(system, {"requestContext": {"connectionId": "c1"}})
    head = EventModel.get("tenant-a", HEAD_SEQ)
    assert head.subs.as_dict() == {} and head.live_from.as_dict() == {}


def test_bad_since_is_answered_with_an_error(api, system, pusher):
    connect(system, "c1")
    for bad in (-1, "3", 1.5, True):
        send(system, "c1", {"action": "subscribe", "agentIds": ["*"], "since": bad})
    assert pusher.names("c1") == ["error"] * 4
    assert all("since" in f["data"]["message"] for f in pusher.frames["c1"])


# --- tickets ----------------------------------------------------------------------------------------
def test_a_ticket_opens_one_websocket_within_60_seconds(api, system, clock, pusher):
    resp = api.post("/api/events/ticket")
    assert resp.status_code == 200
    body = resp.json
    assert body["expiresInSeconds"] == 60 and body["url"] == f"ws://ws.test/?ticket={body['ticket']}"
    assert connect(system, "c1", ticket=body["ticket"]) == {"statusCode": 200}
    assert system.connections.get("c1").tenant_id == "tenant-a"
    again = connect(system, "c2", ticket=body["ticket"])
    assert again["statusCode"] == 401 and "ticket" in json.loads(again["body"])["message"]
    late = api.post("/api/events/ticket").json["ticket"]
    clock.advance(61)
    assert connect(system, "c3", ticket=late)["statusCode"] == 401
    assert connect(system, "c4", ticket="made-up")["statusCode"] == 401
    stored = [m for m in EventModel.scan() if m.tenant_id.startswith("ticket#")]
    assert all(body["ticket"] not in m.tenant_id and late not in m.tenant_id for m in stored)  # only hashes


# --- the new events -------------------------------------------------------------------------------------
def test_a_fire_skipped_by_the_tick_publishes_agent_skipped(api, system, clock, pusher):
    resp = api.post("/api/agents", {"name": "sleepy", "kind": "sleep", "config": {"seconds": 1}})
    aid = resp.json["id"]
    assert api.post(f"/api/agents/{aid}/schedule", {"cronExpression": "30 12 * * *"}).status_code == 200
    api.post(f"/api/agents/{aid}/run", {})  # an active run
    take(system)
    connect(system, "c1")
    send(system, "c1", {"action": "subscribe", "agentIds": [aid]})
    clock.advance(3600)  # the 12:30 fire was missed while the run is still active: skipped (overlap)
    report = system.dispatcher.tick()
    assert report.skipped == 1
    [skipped] = [e for e in pusher.events("c1") if e["event"] == "agent:skipped"]
    assert skipped["data"]["agentId"] == aid and skipped["data"]["reason"] == "OVERLAP"
    assert skipped["data"]["scheduledFor"].startswith("2026-03-02T12:30:00")
    assert skipped["data"]["sessionId"]
    polled = [e for e in api.get("/api/events").json["items"] if e["event"] == "agent:skipped"]
    assert polled == [skipped]


def test_a_fire_skipped_when_its_run_starts_publishes_agent_skipped(api, system, clock, pusher):
    from chalicelib.domain.model import SessionStatus

    aid = api.post("/api/agents", {"name": "s", "kind": "sleep", "config": {"seconds": 1}}).json["id"]
    api.post(f"/api/agents/{aid}/schedule", {"cronExpression": "* * * * *"})
    [first] = take(system)
    clock.advance(30)
    s = system.sessions.get(aid, first.body["s"])
    now = clock.now().timestamp()
    system.sessions.save(s.with_(status=SessionStatus.RUNNING, attempt=1, started_at=now, run_lease_until=now + 600,
                                 stage=None), expect_status=[SessionStatus.QUEUED], expect_attempt=0)
    clock.advance(30)
    system.dispatcher.tick()
    second = take(system)
    clock.advance(30)
    assert work(system, second) == ["skipped"]
    [skipped] = [e for e in api.get("/api/events").json["items"] if e["event"] == "agent:skipped"]
    assert skipped["data"]["reason"] == "OVERLAP" and skipped["data"]["agentId"] == aid


def test_schedule_changed_is_numbered_stored_and_delivered(api, system, pusher):
    connect(system, "c1")
    send(system, "c1", {"action": "subscribe", "agentIds": ["*"]})
    n = system.events.schedule_changed("tenant-a", "agent-1", version=3, action="UPDATED", changed_by="user")
    assert n == 1
    [event] = pusher.events("c1")
    assert event["event"] == "schedule:changed"
    assert event["data"] == {"agentId": "agent-1", "version": 3, "action": "UPDATED", "changedBy": "user"}
    assert api.get("/api/events").json["items"] == [event]


def test_a_replay_that_cannot_be_sent_closes_the_connection_instead_of_leaving_it_silent(api, system, pusher):
    publish(system, 3)
    connect(system, "c1")
    pusher.send_in_order = lambda cid, payloads: "error"
    send(system, "c1", {"action": "subscribe", "agentIds": ["*"], "since": 0})
    assert pusher.closed == ["c1"]
    assert system.connections.get("c1") is None
    assert "c1" not in EventModel.get("tenant-a", HEAD_SEQ).live_from.as_dict()
