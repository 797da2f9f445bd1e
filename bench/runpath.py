"""The whole run path on moto: requests, write units and partition load per run.

One scenario = one tick over ``runs`` due schedules, then the worker handles
every message the tick and the hand-offs send, until the queue is empty (the
Lambda event source's receive and delete are AWS's: the bench takes the
messages off moto's queue directly and reports those requests apart, as a
model).

- *idle*: the cap does not bind: every run is admitted by the tick and each
  finish just releases its slot;
- *backlog*: the cap binds: all but a few slots are held by long runs (loaded
  as RUNNING sessions holding slots, with counters to match), so the tick
  admits a few runs, the rest wait, and each finish hands its slot to the next
  waiting run.

Every request is counted by ``units.PathMeter`` under the phase it belongs to:
the tick (its share per run), the claim, the agent's read, the end of the
attempt (finish), the hand-off (looking for the next waiting run and sending
it), and apart from those, the WebSocket fan-out (events of runs and the
tick's ``scheduler:status``) to one connection per tenant subscribed to
everything.
"""
from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field

import boto3
from moto import mock_aws

from bench import data
from bench.aws_bench import FIRE, T0, agent_items, take
from bench.units import PathMeter, all_clients
from chalicelib.adapters.dynamo import session_to_item
from chalicelib.adapters.provision import provision
from chalicelib.adapters.runstore import slot_key
from chalicelib.adapters.tables import AgentTenantModel, ConnectionModel, ControlModel, SessionModel
from chalicelib.clock import FixedClock
from chalicelib.domain.admission import slot_limits
from chalicelib.domain.model import Priority, SessionStatus, Trigger
from chalicelib.domain.records import Session
from chalicelib.services import dispatch
from chalicelib.services import worker as worker_mod
from chalicelib.services.container import Container
from chalicelib.settings import Settings

WS_ENDPOINT = "https://bench0ws.execute-api.us-east-1.amazonaws.com/api"
BACKLOG_FREE = 4  # slots left free for the backlog scenario (the others are held by long runs)
OWN_PHASES = ("tick", "claim", "agent read", "finish", "hand-off")
WS_PHASES = ("ws events", "ws status")
WORKER_PHASES = ("claim", "agent read", "finish", "hand-off")


@dataclass
class PathResult:
    cap: int
    mode: str  # idle | backlog
    runs: int  # runs that ended in the scenario
    busy: int  # slots held by long runs loaded beforehand
    tick_report: dict
    meter: PathMeter
    results: Counter
    tenants_connected: int
    seconds: float = 0.0
    worker_calls: Counter = field(default_factory=Counter)  # requests per phase, whole scenario

    def per_run(self, phases) -> float:
        return self.meter.total(phases) / max(1, self.runs)

    def own_per_run(self) -> float:
        return self.per_run(OWN_PHASES)

    def wcu_per_run(self, phases=OWN_PHASES) -> float:
        return self.meter.units(phases)[0] / max(1, self.runs)

    def rru_per_run(self, phases=OWN_PHASES) -> float:
        return self.meter.units(phases)[1] / max(1, self.runs)

    def ops_per_run(self, phase: str) -> Counter:
        return self.meter.by_op([phase])


def _busy_sessions(cap: int, free: int) -> tuple[list[SessionModel], dict[str, int]]:
    """RUNNING sessions holding all but ``free`` slots (spread over the shards), and the counters."""
    limits = slot_limits(cap)
    spare = {name: 0 for name, _ in limits}
    for k in range(free):
        spare[limits[k % len(limits)][0]] += 1
    items, used = [], {}
    now = T0.timestamp()
    n = 0
    for name, limit in limits:
        used[name] = max(0, limit - spare[name])
        for _ in range(used[name]):
            s = Session(agent_id=f"ag_long{n:05d}", session_id=f"20260302T000000Z-long{n:05d}", tenant_id="tenant_long",
                        status=SessionStatus.RUNNING, trigger=Trigger.SCHEDULE, priority=Priority.NORMAL,
                        scheduled_for=now - 60, queued_at=now - 60, max_attempts=1, timeout_seconds=86400,
                        attempt=1, started_at=now - 60, run_lease_until=now + 10 * 86400, slot=name,
                        claim=f"long{n}")
            items.append(session_to_item(s, shards=1, expires_at=None))
            n += 1
    return items, used


def measure_path(cap: int, mode: str, runs: int, *, ws: bool = True, log=print) -> PathResult:
    started = time.perf_counter()
    with mock_aws():
        region = "us-east-1"
        sqs = boto3.client("sqs", region_name=region)
        sns = boto3.client("sns", region_name=region)
        settings = provision(Settings.from_env({}).with_(max_concurrent_agents=cap,
                                                         ws_endpoint=WS_ENDPOINT if ws else ""), sqs, sns)
        clock = FixedClock(T0)
        c = Container(settings, clock=clock)
        n = runs if mode == "backlog" else min(runs, cap)
        scheds = data.schedules(n, jitter=False, overlap=data.OverlapPolicy.ALLOW, created_at=T0.timestamp())
        with AgentTenantModel.batch_write() as batch:
            for m in agent_items(scheds, settings.due_shards):
                batch.save(m)
        busy = 0
        if mode == "backlog":
            items, used = _busy_sessions(cap, min(BACKLOG_FREE, cap))
            busy = len(items)
            with SessionModel.batch_write() as batch:
                for it in items:
                    batch.save(it)
            for name, u in used.items():
                ControlModel(slot_key(name), used=u).save()
        tenants = sorted({s.tenant_id for s in scheds})
        if ws:
            for k, t in enumerate(tenants):
                ConnectionModel(f"conn{k:03d}", tenant_id=t, subscriptions=["*"], connected_at=T0.timestamp()).save()

        meter = PathMeter().attach(all_clients(c))
        in_status = [False]  # the status pushes run on the pusher's threads: no phase stack there

        def ws_phase(service, op, body):
            if service == "apigatewaymanagementapi" or body.get("TableName") == ConnectionModel.Meta.table_name:
                return "ws status" if in_status[0] else "ws events"
            return None

        meter.overrides.append(ws_phase)
        publish_status = c.dispatcher._publish_status

        def status_flagged():
            in_status[0] = True
            try:
                return publish_status()
            finally:
                in_status[0] = False

        c.dispatcher._publish_status = status_flagged
        undo = [
            meter.wrap(c.dispatcher, "_publish_status", "ws status"),
            meter.wrap(c.runs, "claim", "claim"),
            meter.wrap(c.agents, "get_cached", "agent read"),
            meter.wrap(c.runs, "finish", "finish"),
            meter.wrap(worker_mod, "_next_waiting", "hand-off"),
            meter.wrap(c.dispatcher, "send_one", "hand-off", unless=("tick",)),
            meter.wrap(c.runs, "set_waiting", "hand-off", unless=("tick",)),
            meter.wrap(c.events, "publish", "ws events"),
        ]
        dispatch.cron_for.cache_clear()
        with meter.phase("tick"):
            report = c.dispatcher.tick()
        clock.advance(FIRE - T0.timestamp())
        results: Counter = Counter()
        w = c.worker
        while True:
            msgs = take(settings.work_queue_url, region)
            if not msgs:
                break
            for msg in msgs:
                with meter.phase("worker"):
                    results[w.handle(msg)] += 1
        for u in reversed(undo):
            u()
        meter.detach()
        left = sum(1 for _ in SessionModel.pending_index.query("p000"))
        if left or results.get("succeeded", 0) != n:
            raise RuntimeError(f"{mode} at cap {cap}: {dict(results)}, {left} runs still waiting")
    res = PathResult(cap=cap, mode=mode, runs=n, busy=busy,
                     tick_report={k: getattr(report, k) for k in ("due", "created", "admitted")},
                     meter=meter, results=results, tenants_connected=len(tenants) if ws else 0,
                     seconds=time.perf_counter() - started)
    log(f"  {mode} at cap {cap:,}: {n} runs, {res.own_per_run():.2f} own requests and "
        f"{res.wcu_per_run():.1f} WCU per run ({res.seconds:.1f} s)")
    return res
