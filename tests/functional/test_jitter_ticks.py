"""Jittered fires are judged by their jittered time: on time is on time, however large the jitter."""
from __future__ import annotations

from tests.functional.helpers import take, work


def test_hourly_fires_with_a_large_jitter_all_run(api, system, clock):
    """Hourly cron, jitter 3000 s (less than the hour), catch-up NONE: six hours of minute
    ticks run six fires, each at its jittered second; none is taken for a missed fire."""
    r = api.post("/api/agents", {"name": "jittered", "kind": "echo", "config": {}})
    aid = r.json["id"]
    r = api.post(f"/api/agents/{aid}/schedule",
                 {"cronExpression": "0 * * * *", "jitterSeconds": 3000, "catchup": "NONE", "overlapPolicy": "ALLOW"})
    assert r.status_code == 200, r.body
    start = clock.now().timestamp()
    # (visible at, message): SQS's DelaySeconds on the fixed clock, counted from when each was sent
    held: list[tuple[float, object]] = [(start + m.delay_seconds, m) for m in take(system)]
    while clock.now().timestamp() < start + 6 * 3600:
        clock.advance(60)
        system.dispatcher.tick()
        now = clock.now().timestamp()
        held += [(now + m.delay_seconds, m) for m in take(system)]
        while held and min(v for v, _ in held) <= clock.now().timestamp() + 60:
            visible, m = min(held, key=lambda h: h[0])
            held.remove((visible, m))
            clock.advance(max(0.0, visible - clock.now().timestamp()))
            work(system, [m])  # the worker waits out the last second itself
    items = api.get(f"/api/agents/{aid}/sessions?limit=100").json["items"]
    ran = [s for s in items if s["status"] == "SUCCEEDED"]
    assert len(ran) == 6, [(s["status"], s.get("skipReason"), s["scheduledFor"]) for s in items]
    assert not [s for s in items if s["status"] == "SKIPPED"]
    for s in ran:
        assert s["startedAt"] == s["scheduledFor"]  # started on its jittered second
