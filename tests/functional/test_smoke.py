def test_create_schedule_and_read(api):
    r = api.post("/api/agents", {"name": "daily report", "kind": "echo", "config": {"message": "hi"}})
    assert r.status_code == 201, r.body
    agent = r.json
    r = api.post(f"/api/agents/{agent['id']}/schedule", {"cronExpression": "30 9 * * *", "timezone": "America/New_York"})
    assert r.status_code == 200, r.body
    assert r.json["nextRunAt"].endswith("-05:00")
    assert len(r.json["nextRuns"]) == 5
    r = api.get(f"/api/agents/{agent['id']}")
    assert r.status_code == 200 and r.json["schedule"]["cronExpression"] == "30 9 * * *"
