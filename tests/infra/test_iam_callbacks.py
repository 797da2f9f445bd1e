"""The async run path's AWS calls are granted: callbacks through the REST function, the accept
write in the worker, the timeout in the tick's sweep (see test_iam_coverage.py for the method)."""
from __future__ import annotations

import json

from chalicelib.agents import registry
from chalicelib.agents.base import RunAccepted
from infra import access
from tests.infra.test_iam_coverage import SECRET, _drain, recorder  # noqa: F401 (the fixture)


class _Accepting:
    name = "echo"
    tokens: list = []

    def validate_config(self, config):
        return dict(config or {})

    def run(self, config, ctx, deps):
        _Accepting.tokens.append((ctx.session_id, ctx.attempt, ctx.callback["token"]))
        raise RunAccepted()


def test_async_runs_and_their_callbacks_are_granted(recorder, monkeypatch):  # noqa: F811
    from chalice.test import Client

    from app import app
    from chalicelib.api.auth import issue

    monkeypatch.setitem(registry._kinds, "echo", _Accepting())
    rec, c, clock = recorder
    token = issue("tenant-a", SECRET)
    with Client(app) as client:
        def call(path, body=None, bearer=token):
            with rec("api_handler"):
                r = client.http.request("POST", path, body=json.dumps(body or {}),
                                        headers={"Authorization": f"Bearer {bearer}", "Content-Type": "application/json"})
            return r.status_code, (json.loads(r.body) if r.body else {})

        _, agent = call("/api/agents", {"name": "async", "kind": "echo", "maxRetries": 1, "heartbeatSeconds": 30})
        aid = agent["id"]
        for _ in range(3):
            call(f"/api/agents/{aid}/run")
        _drain(rec, c)
        (s1, _, t1), (s2, _, t2), (s3, _, t3) = _Accepting.tokens[:3]
        assert call(f"/api/callbacks/{s1}/1/progress", {"progress": 10}, t1)[0] == 200
        assert call(f"/api/callbacks/{s1}/1/heartbeat", {"details": {"x": 1}}, t1)[0] == 200
        assert call(f"/api/callbacks/{s1}/1/fail", {"message": "try again"}, t1)[0] == 200
        assert call(f"/api/callbacks/{s2}/1/fail", {"message": "no", "category": "PERMANENT"}, t2)[0] == 200
        assert call(f"/api/agents/{aid}/sessions/{s3}/cancel")[0] == 202
        clock.advance(5)
        _drain(rec, c)  # the retry of the first run: accepted again
        s1b, attempt, t1b = _Accepting.tokens[-1]
        assert (s1b, attempt) == (s1, 2)
        clock.advance(31)
        with rec("tick"):
            c.dispatcher.tick()  # the heartbeat timeout: the run dies (no retries left)
        assert c.runs.get(aid, s1).status.value == "DEAD"

    observed = rec.observed()
    assert ("sqs:SendMessage", "queue:dlq") in observed["api_handler"]  # a fail callback that killed its run
    missing = {}
    for function, needed in observed.items():
        granted = {(action, a.resource) for a in access.grants(function) for action in a.actions}
        if needed - granted:
            missing[function] = sorted(needed - granted)
    assert not missing, f"calls not granted in infra/access.py: {missing}"
