"""The callback path on moto: AWS requests per async run, by phase.

Each run is started by run-now, delivered to the worker, and taken by an agent that
answers ``202`` (a kind that raises RunAccepted); the agent then calls back once each:
``progress``, ``heartbeat``, ``complete``. Requests are counted with botocore hooks
(``bench.counting``) under the phase that made them: the claim (with the callback
token's hash, in the same UpdateItem), the agent's read, the accept write, each
callback, and apart from those the events (``agent:*`` to the event stream) and the
admission of the run (run-now's own work, reported apart).

    python -m bench.callbackpath [runs]
"""
from __future__ import annotations

import sys
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timezone

import boto3
from moto import mock_aws

from bench.counting import RequestCounter, container_clients

PHASES = ("claim", "agent read", "accept", "progress", "heartbeat", "complete")
APART = ("events", "admission")


class _AcceptingKind:
    name = "bench-async"

    def validate_config(self, config):
        return dict(config or {})

    def run(self, config, ctx, deps):
        from chalicelib.agents.base import RunAccepted

        _AcceptingKind.tokens[ctx.session_id] = ctx.callback["token"]
        raise RunAccepted()

    tokens: dict[str, str] = {}


@dataclass
class CallbackPathResult:
    runs: int
    by_phase: dict[str, Counter]
    results: Counter

    def per_run(self, phase: str) -> float:
        return sum(self.by_phase.get(phase, Counter()).values()) / max(1, self.runs)

    def own_per_run(self) -> float:
        return sum(self.per_run(p) for p in PHASES)

    def lines(self) -> list[str]:
        out = [f"callback path: {self.runs} async runs (claim, accept, progress, heartbeat, complete), "
               f"worker results {dict(self.results)}"]
        for p in PHASES + APART:
            ops = ", ".join(f"{op} {n / max(1, self.runs):.2f}" for op, n in sorted(self.by_phase.get(p, Counter()).items()))
            out.append(f"  {p:<11} {self.per_run(p):5.2f} requests per run   {ops}")
        out.append(f"  our own requests per async run (claim to complete, events and admission apart): {self.own_per_run():.2f}")
        return out


def measure_callback_path(runs: int = 20) -> CallbackPathResult:
    from bench.aws_bench import take
    from chalicelib.adapters.provision import provision
    from chalicelib.agents import registry
    from chalicelib.api.callbacks import handle
    from chalicelib.clock import FixedClock
    from chalicelib.domain.ids import new_agent_id
    from chalicelib.domain.model import Priority
    from chalicelib.domain.records import Agent
    from chalicelib.services.container import Container
    from chalicelib.settings import Settings
    from devtools import moto_fixes

    moto_fixes.apply()
    registry.register(_AcceptingKind())
    with mock_aws():
        base = Settings.from_env({"SCHEDULER_JWT_SECRET": "bench"}).with_(max_concurrent_agents=max(5, runs))
        settings = provision(base, boto3.client("sqs", region_name="us-east-1"), boto3.client("sns", region_name="us-east-1"))
        clock = FixedClock(datetime(2026, 3, 2, 12, 0, tzinfo=timezone.utc))
        c = Container(settings, clock=clock)
        now = clock.now().timestamp()
        agent = Agent(tenant_id="t-bench", agent_id=new_agent_id(), name="async", kind="bench-async", config={},
                      timeout_seconds=3600, max_retries=0, created_at=now, updated_at=now, heartbeat_seconds=60)
        c.agents.create(agent)
        meter = RequestCounter().attach(container_clients(c))
        meter.wrap(c.runs, "claim", "claim")
        meter.wrap(c.agents, "get_cached", "agent read")
        meter.wrap(c.runs, "accept", "accept")
        meter.wrap(c.events, "publish_many", "events")
        results: Counter = Counter()
        with meter.phase("admission"):
            sessions = [c.dispatcher.submit_manual(agent, Priority.NORMAL, None) for _ in range(runs)]
        for body in take(settings.work_queue_url, settings.region):
            results[c.worker.handle(body)] += 1
        for s in sessions:
            token = _AcceptingKind.tokens[s.session_id]
            headers = {"Authorization": f"Bearer {token}"}
            clock.advance(1)
            for action, raw in (("progress", b'{"progress": 50}'), ("heartbeat", b'{"details": {"step": 2}}'),
                                ("complete", b'{"output": {"ok": true}}')):
                with meter.phase(action):
                    handle(c.callbacks, s.session_id, "1", action, headers, raw)
        meter.detach()
        by_phase: dict[str, Counter] = {}
        for (phase, op), n in meter.sent.items():
            by_phase.setdefault(phase, Counter())[op] += n
        ended = [c.runs.get(s.agent_id, s.session_id) for s in sessions]
        done = sum(1 for e in ended if e is not None and e.status.value == "SUCCEEDED")
        assert done == runs, f"{done} of {runs} runs succeeded"
        return CallbackPathResult(runs, by_phase, results)


if __name__ == "__main__":  # pragma: no cover - a report for people
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 20
    print("\n".join(measure_callback_path(n).lines()))
