"""Flow control figures: admission cost with pools, tenant fairness and aging.

``python -m bench.flow`` prints three tables (a minute or two on moto):

1. AWS requests per admitted run, whole run path (admission + claim + finish + hand-off +
   sends), on moto, for agents naming 0, 1 and 4 pools (pools wide enough never to bind),
   counted with botocore hooks as the other benches do.
2. Two tenants under a saturated cap: the steady tenant's wait (p50/p99) with fairness and
   with plain oldest-first order; pure simulation of ``plan_admission`` with a virtual clock.
3. A LOW run behind a stream of NORMAL runs that keeps the cap saturated: its wait with aging
   on (600 s) and off.
"""
from __future__ import annotations

import statistics
from dataclasses import replace

from chalicelib.domain.admission import Candidate, SlotShard, plan_admission, tenant_key
from chalicelib.domain.model import Priority


# --- 1. admission cost on moto -----------------------------------------------------------------
def admission_cost(pools_per_agent: int, runs: int = 40, agents: int = 8, cap: int = 5) -> dict:
    import boto3
    from moto import mock_aws

    from bench.counting import RequestCounter, container_clients
    from chalicelib.adapters.provision import provision
    from chalicelib.api.auth import issue
    from chalicelib.clock import FixedClock
    from chalicelib.services import wiring
    from chalicelib.services.container import Container
    from chalicelib.settings import Settings
    from devtools import moto_fixes
    from tests.conftest import T0
    from tests.functional.helpers import take

    moto_fixes.apply()
    with mock_aws():
        base = Settings.from_env({"SCHEDULER_JWT_SECRET": "bench"}).with_(max_concurrent_agents=cap)
        settings = provision(base, boto3.client("sqs", region_name="us-east-1"),
                             boto3.client("sns", region_name="us-east-1"))
        c = Container(settings, clock=FixedClock(T0))
        wiring.set_container(c)
        try:
            tenant = "bench"
            for i in range(pools_per_agent):
                c.pools.put(tenant, f"p{i}", 1000, None, T0.timestamp())
            ids = []
            for i in range(agents):
                body: dict = {"name": f"a{i}", "kind": "echo"}
                if pools_per_agent:
                    body["pools"] = [f"p{k}" for k in range(pools_per_agent)]
                out = c.agent_service.create(tenant, body)
                ids.append(out["id"])
            c.dispatcher.set_paused(True)
            for n in range(runs):
                c.agent_service.run_now(tenant, ids[n % agents], {})
            counter = RequestCounter().attach(container_clients(c))
            counter.reset()
            c.dispatcher.set_paused(False)  # resume admits
            done = 0
            for _ in range(runs + 5):
                sent = take(c)
                if not sent:
                    if c.dispatcher.admit() == 0:
                        break
                    continue
                for m in sent:
                    if c.worker.handle(m.body) == "succeeded":
                        done += 1
            total = counter.total()
            counter.detach()
            del issue
            return {"pools": pools_per_agent, "runs": done, "requests": total,
                    "per_run": total / max(done, 1), "by_op": dict(counter.by_op())}
        finally:
            wiring.set_container(None)


# --- 2 and 3: pure simulations of admission -----------------------------------------------------
def _simulate(arrivals: list[Candidate], *, cap: int, duration: float, horizon: float, fair: bool,
              aging: float) -> dict[str, float]:
    """Admit in 1 s steps (as finishing runs and ticks do); returns each run's wait."""
    waiting: dict[str, Candidate] = {}
    running: list[tuple[float, str]] = []  # (end, tenant)
    waits: dict[str, float] = {}
    arrivals = sorted(arrivals, key=lambda c: c.eligible_at)
    i = 0
    t = 0.0
    while t <= horizon:
        while i < len(arrivals) and arrivals[i].eligible_at <= t:
            waiting[arrivals[i].session_id] = arrivals[i]
            i += 1
        running = [(end, ten) for end, ten in running if end > t]
        held: dict[str, int] = {}
        for _, ten in running:
            held[tenant_key(ten)] = held.get(tenant_key(ten), 0) + 1
        cands = list(waiting.values()) if fair else [replace(c, tenant_id="all") for c in waiting.values()]
        plan = plan_admission(cands, [SlotShard("s000", len(running), cap)], now=t, lookahead=0, claim_grace=30,
                              counters=held if fair else {}, aging_seconds=aging)
        for a in plan.admit:
            orig = waiting.pop(a.candidate.session_id)
            waits[orig.session_id] = t - orig.eligible_at
            running.append((t + duration, orig.tenant_id))
        t += 1.0
    return waits


def fairness(cap: int = 10, duration: float = 10.0) -> dict:
    bulk = [Candidate(f"bulk{n:04d}", "bulk", "b", Priority.NORMAL, 0.0, 60) for n in range(600)]
    steady = [Candidate(f"steady{n:04d}", "steady", "s", Priority.NORMAL, 1.0 + 5.0 * n, 60) for n in range(100)]
    out = {}
    for fair in (True, False):
        waits = _simulate(bulk + steady, cap=cap, duration=duration, horizon=1200, fair=fair, aging=0)
        sw = sorted(w for k, w in waits.items() if k.startswith("steady"))
        out["fair" if fair else "fifo"] = {
            "steady_started": len(sw), "steady_p50": statistics.median(sw) if sw else None,
            "steady_p99": sw[min(len(sw) - 1, int(0.99 * len(sw)))] if sw else None,
            "bulk_started": sum(1 for k in waits if k.startswith("bulk")),
        }
    return out


def aging(cap: int = 4, duration: float = 10.0, horizon: float = 3600.0) -> dict:
    # NORMAL runs arrive faster than the cap serves them (0.5/s against 0.4/s): a backlog that grows
    normal = [Candidate(f"n{n:05d}", "t", "n", Priority.NORMAL, 2.0 * n, 60) for n in range(int(horizon / 2))]
    low = [Candidate("low", "t", "l", Priority.LOW, 600.0, 60)]  # behind a backlog of about 60
    out = {}
    for secs in (600, 0):
        waits = _simulate(normal + low, cap=cap, duration=duration, horizon=horizon, fair=True, aging=secs)
        out[f"aging={secs}"] = waits.get("low")
    return out


def main() -> None:
    print("1. AWS requests per admitted run, whole run path (moto; pools never bind)")
    print("| pools per agent | runs | requests | per run |")
    print("|---|---|---|---|")
    for k in (0, 1, 4):
        r = admission_cost(k)
        print(f"| {k} | {r['runs']} | {r['requests']} | {r['per_run']:.2f} |")
    print()
    f = fairness()
    print("2. Saturated cap 10, runs of 10 s: tenant 'bulk' queues 600 runs at t=0, 'steady' one every 5 s")
    print("| order | steady started | steady wait p50 s | steady wait p99 s | bulk started (20 min) |")
    print("|---|---|---|---|---|")
    for k, v in f.items():
        print(f"| {k} | {v['steady_started']} | {v['steady_p50']} | {v['steady_p99']} | {v['bulk_started']} |")
    print()
    a = aging()
    print("3. One LOW run queued at t=600 s behind a growing NORMAL backlog (cap 4, runs of 10 s, 1 h)")
    print("| aging | LOW run's wait s |")
    print("|---|---|")
    for k, v in a.items():
        print(f"| {k} | {'never started within 1 h' if v is None else v} |")


if __name__ == "__main__":
    main()
