"""Figure 1 (requests per fire, on moto) and figures 2 and 6 (CPU and memory, replayed).

On moto, ``n`` due schedules are bulk-loaded (``batch_write``) into the
project's agents table and, item for item, into the baseline's table. One
project tick and one baseline tick run with their requests counted by botocore
hooks and their raw responses recorded. The worker then handles a sample of
the admitted runs (claim, the agent's read, finish, hand-off counted separately) and
the baseline worker the same number of runs; per-run figures are that sample's
mean.

Figures 2 and 6 re-run the same ticks outside moto with every request answered
from the recording (``counting.Replayer``), so ``time.process_time`` measures
the project's code (planning, pynamodb/botocore serialization and parsing), not
moto, whose cost grows with its tables.
"""
from __future__ import annotations

import gc
import json
import time
import tracemalloc
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timezone

import boto3
from moto import mock_aws
from moto.core import DEFAULT_ACCOUNT_ID

from bench import baseline as bl
from bench import data
from bench.counting import Recorder, Replayer, ReplayStop, RequestCounter, container_clients
from chalicelib.adapters.provision import provision
from chalicelib.adapters.tables import AgentTenantModel
from chalicelib.adapters.tickstore import TickWriter
from chalicelib.clock import FixedClock
from chalicelib.domain.ids import due_shard
from chalicelib.services import dispatch
from chalicelib.services.container import Container
from chalicelib.settings import Settings

T0 = datetime(2026, 3, 2, 11, 59, 30, tzinfo=timezone.utc)  # the tick; every schedule is due at 12:00:00
FIRE = T0.timestamp() + 30
WORKER_PHASES = ("claim", "agent read", "finish", "hand-off")
MAX_CAP = 1000  # SCHEDULER_MAX_CONCURRENT_AGENTS upper bound


@dataclass
class MotoResult:
    n: int
    cap: int
    settings: Settings
    tick_report: dict
    tick: Counter  # op -> requests, project tick
    tick_calls: int  # before-call count (check: equals sum(tick) with no retries)
    tick_bytes: int  # request bytes sent by the tick
    tick_bytes_in: int  # response bytes
    worker_runs: int
    worker: dict  # phase -> Counter(op -> requests), summed over the sample
    base_tick: Counter
    base_tick_report: dict
    base_worker_runs: int
    base_worker: Counter
    worker_bytes: dict = field(default_factory=dict)  # phase -> (request bytes, response bytes), whole sample
    tick_log: list = field(repr=False, default_factory=list)
    base_log: list = field(repr=False, default_factory=list)
    query_items: int = 0  # agents items returned by the due queries
    query_bytes: int = 0  # their response bytes
    scan_bytes: int = 0  # the baseline's scan response bytes
    seconds: float = 0.0

    # per-fire views
    @property
    def fires(self) -> int:
        return max(1, self.tick_report["created"])

    def tick_per_fire(self) -> float:
        return sum(self.tick.values()) / self.fires

    def worker_per_run(self, phase: str | None = None) -> float:
        phases = WORKER_PHASES if phase is None else (phase,)
        return sum(sum(self.worker[p].values()) for p in phases) / max(1, self.worker_runs)

    def base_tick_per_fire(self) -> float:
        return sum(self.base_tick.values()) / max(1, self.base_tick_report["sent"])

    def base_worker_per_run(self) -> float:
        return sum(self.base_worker.values()) / max(1, self.base_worker_runs)


def _queue(url: str, region: str):
    from moto.sqs.models import sqs_backends

    return sqs_backends[DEFAULT_ACCOUNT_ID][region].get_queue(url.rstrip("/").rsplit("/", 1)[-1])


def take(url: str, region: str) -> list[dict]:
    """Remove and return the bodies of every message on a moto queue (delayed or not)."""
    q = _queue(url, region)
    out = [json.loads(m.body) for m in list(q._messages)]
    q._messages = []
    return out


def agent_items(scheds: list[data.Sched], shards: int) -> list[AgentTenantModel]:
    now = T0.timestamp()
    out = []
    for s in scheds:
        out.append(AgentTenantModel(
            s.tenant_id, s.agent_id, name=s.agent_id, kind="echo", config={}, timeout_seconds=data.TIMEOUT_SECONDS,
            max_retries=0, created_at=now, updated_at=now, schedule=s.spec.to_item(), next_run_at=FIRE,
            due_shard=due_shard(s.agent_id, shards), due_at=FIRE,
        ))
    return out


def measure_on_moto(n: int, *, worker_sample: int = 20, cap: int | None = None, log=print) -> MotoResult:
    """One project tick and one baseline tick over ``n`` due schedules, counted and recorded."""
    started = time.perf_counter()
    cap = min(MAX_CAP, n) if cap is None else cap
    with mock_aws():
        region = "us-east-1"
        sqs = boto3.client("sqs", region_name=region)
        sns = boto3.client("sns", region_name=region)
        ddb = boto3.client("dynamodb", region_name=region)
        settings = provision(Settings.from_env({}).with_(max_concurrent_agents=cap), sqs, sns)
        clock = FixedClock(T0)
        c = Container(settings, clock=clock)
        scheds = data.schedules(n, jitter=False, overlap=data.OverlapPolicy.SKIP, created_at=T0.timestamp())
        items = agent_items(scheds, settings.due_shards)
        with AgentTenantModel.batch_write() as batch:
            for m in items:
                batch.save(m)
        base_url = bl.create(ddb, sqs)
        bl.load(ddb, [m.serialize() for m in items])
        del items
        log(f"  moto: loaded {n} schedules into both tables ({time.perf_counter() - started:.1f} s)")

        # --- the project's tick -------------------------------------------------------
        dispatch.cron_for.cache_clear()
        counter = RequestCounter().attach(container_clients(c))
        rec = Recorder().attach(container_clients(c))
        with rec.recording(), counter.phase("tick"):
            report = c.dispatcher.tick()
        tick_log = rec.log
        rec.detach()
        tick_ops = counter.by_op(["tick"])
        tick_calls = sum(v for (p, _), v in counter.calls.items() if p == "tick")
        q_items = q_bytes = 0
        for op, _, _, body in tick_log:
            if op == "Query" and b"due_shard" in body:
                q_items += json.loads(body).get("Count", 0)
                q_bytes += len(body)
        log(f"  moto: project tick: {report.created} fires, {sum(tick_ops.values())} requests "
            f"({time.perf_counter() - started:.1f} s)")

        # --- the worker on a sample of the admitted runs ------------------------------
        sent = take(settings.work_queue_url, region)
        clock.advance(FIRE - T0.timestamp())
        w = c.worker
        from chalicelib.services import worker as worker_mod

        next_waiting = worker_mod._next_waiting
        counter.wrap(c.runs, "claim", "claim")
        counter.wrap(c.agents, "get_cached", "agent read")
        counter.wrap(c.runs, "finish", "finish")
        counter.wrap(worker_mod, "_next_waiting", "hand-off")
        counter.wrap(c.dispatcher, "send_one", "hand-off")
        counter.wrap(c.runs, "set_waiting", "hand-off")
        results: Counter[str] = Counter()
        sample = sent[:worker_sample]
        try:
            for msg in sample:
                with counter.phase("worker"):
                    results[w.handle(msg)] += 1
        finally:
            worker_mod._next_waiting = next_waiting
        if results.get("succeeded", 0) != len(sample):
            raise RuntimeError(f"worker sample did not succeed: {dict(results)}")
        worker = {p: counter.by_op([p]) for p in WORKER_PHASES}
        worker_bytes = {p: (counter.bytes_out.get(p, 0), counter.bytes_in.get(p, 0)) for p in WORKER_PHASES}
        counter.detach()
        log(f"  moto: project worker: {len(sample)} runs ({time.perf_counter() - started:.1f} s)")

        # --- the baseline on the same items -------------------------------------------
        b = bl.BaselineScheduler(ddb, sqs, base_url)
        bcount = RequestCounter().attach([ddb, sqs])
        brec = Recorder().attach([ddb, sqs])
        with brec.recording(), bcount.phase("tick"):
            breport = b.tick(FIRE)  # "at the next minute": the first tick at or after the fire time
        base_log = brec.log
        brec.detach()
        base_tick = bcount.by_op(["tick"])
        scan_bytes = sum(len(body) for op, _, _, body in base_log if op == "Scan")
        bsent = take(base_url, region)
        with bcount.phase("worker"):
            for msg in bsent[: len(sample)]:
                b.work(msg, FIRE)
        base_worker = bcount.by_op(["worker"])
        bcount.detach()
        log(f"  moto: baseline tick: {breport['sent']} fires, {sum(base_tick.values())} requests "
            f"({time.perf_counter() - started:.1f} s)")

    return MotoResult(
        n=n, cap=cap, settings=settings,
        tick_report={k: getattr(report, k) for k in ("due", "created", "skipped", "admitted", "resent", "lost_races")},
        tick=tick_ops, tick_calls=tick_calls, tick_bytes=counter.bytes_out.get("tick", 0),
        tick_bytes_in=counter.bytes_in.get("tick", 0), worker_bytes=worker_bytes,
        worker_runs=len(sample), worker=worker,
        base_tick=base_tick, base_tick_report=breport, base_worker_runs=min(len(bsent), len(sample)),
        base_worker=base_worker, tick_log=tick_log, base_log=base_log,
        query_items=q_items, query_bytes=q_bytes, scan_bytes=scan_bytes,
        seconds=time.perf_counter() - started,
    )


# --- figures 2 and 6: the same ticks, replayed ----------------------------------------------------
class _Sections:
    """Exclusive process time per section of the tick (nested sections are subtracted)."""

    def __init__(self) -> None:
        self.totals: Counter = Counter()
        self._stack: list[list] = []

    def wrap(self, owner, attr: str, name: str):
        fn = owner.__dict__.get(attr) if isinstance(owner, type) else getattr(owner, attr, None)
        if fn is None:
            return None

        def wrapped(*a, **k):
            frame = [name, time.process_time(), 0.0]
            self._stack.append(frame)
            try:
                return fn(*a, **k)
            finally:
                self._stack.pop()
                spent = time.process_time() - frame[1]
                self.totals[name] += spent - frame[2]
                if self._stack:
                    self._stack[-1][2] += spent

        setattr(owner, attr, wrapped)
        return fn


@dataclass
class CpuResult:
    n: int
    fires: int
    plan_s: float  # pure planning of the same fires: plan_fires + session ids + plan_admission
    base_plan_s: float  # the baseline's planning: croniter's next fire per item
    cold_s: float  # first replay, cron cache empty
    warm_s: float  # best of the warm replays
    repeats: int
    sections: dict  # name -> seconds (one instrumented warm replay)
    peak_bytes: int
    base_s: float
    base_fires: int
    base_peak_bytes: int

    @property
    def per_fire_us(self) -> float:
        return self.warm_s / max(1, self.fires) * 1e6

    @property
    def cold_per_fire_us(self) -> float:
        return self.cold_s / max(1, self.fires) * 1e6

    @property
    def base_per_fire_us(self) -> float:
        return self.base_s / max(1, self.base_fires) * 1e6

    @property
    def plan_per_fire_us(self) -> float:
        return self.plan_s / max(1, self.fires) * 1e6

    @property
    def base_plan_per_fire_us(self) -> float:
        return self.base_plan_s / max(1, self.base_fires) * 1e6


SECTIONS = (
    # (owner, attribute, label); owner is resolved at run time
    ("Dispatcher", "_read_due", "read due: Query + items -> Agent"),
    ("dispatch", "plan_fires", "plan fires (domain.schedule.plan_fires)"),
    ("Dispatcher", "_plan_schedule", "build plans: Session records"),
    ("TickWriter", "commit", "commit: TransactWriteItems (items + serialize)"),
    ("Dispatcher", "admit", "admission: slot counters, pending query, plan_admission, admit transactions"),
    ("Dispatcher", "_send", "send: SendMessageBatch"),
    ("Dispatcher", "recover", "recovery sweep: expired leases"),
    ("Dispatcher", "reconcile", "reconciler: counters against holders"),
)


def _replay_project(settings: Settings, log_: list, repeats: int) -> tuple[float, float, dict, int, int]:
    c = Container(settings, clock=FixedClock(T0))
    rp = Replayer(log_).attach(container_clients(c))
    fires = 0

    def once() -> float:
        nonlocal fires
        rp.rewind()
        gc.collect()
        t = time.process_time()
        r = c.dispatcher.tick()
        spent = time.process_time() - t
        if rp.remaining():
            raise RuntimeError(f"replay left {rp.remaining()} responses unused")
        fires = r.created
        return spent

    dispatch.cron_for.cache_clear()
    cold = once()
    warm = min(once() for _ in range(max(1, repeats)))

    # one instrumented replay for the breakdown
    secs = _Sections()
    saved = []
    for owner_name, attr, label in SECTIONS:
        owner = {"Dispatcher": dispatch.Dispatcher, "TickWriter": TickWriter}.get(owner_name, dispatch)
        fn = secs.wrap(owner, attr, label)
        if fn is not None:
            saved.append((owner, attr, fn))
    try:
        total = once()
    finally:
        for owner, attr, fn in saved:
            setattr(owner, attr, fn)
    sections = dict(secs.totals)
    sections["other (state, sweep, bookkeeping)"] = max(0.0, total - sum(secs.totals.values()))

    rp.rewind()
    gc.collect()
    tracemalloc.start()
    c.dispatcher.tick()
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    rp.detach()
    return cold, warm, sections, peak, fires


def profile_by_package(settings: Settings, log_: list) -> dict[str, float]:
    """Share of the replayed tick's CPU by where the code lives (cProfile own time per function)."""
    import cProfile
    import pstats

    c = Container(settings, clock=FixedClock(T0))
    rp = Replayer(log_).attach(container_clients(c))
    rp.rewind()
    c.dispatcher.tick()  # warm
    rp.rewind()
    prof = cProfile.Profile()
    prof.enable()
    c.dispatcher.tick()
    prof.disable()
    rp.detach()
    shares: Counter = Counter()
    for (filename, _, _), (_, _, tottime, _, _) in pstats.Stats(prof).stats.items():  # type: ignore[attr-defined]
        f = filename.replace("\\", "/")
        if "/chalicelib/" in f:
            key = "chalicelib (the project)"
        elif "/pynamodb/" in f:
            key = "pynamodb"
        elif "/botocore/" in f or "/boto3/" in f or "/jmespath/" in f or "/dateutil/" in f:
            key = "botocore"
        elif "/bench/" in f:
            key = "bench (replay hooks)"
        elif "site-packages" in f:
            key = "other packages"
        else:
            key = "Python stdlib and builtins (json, datetime, hashlib...)"
        shares[key] += tottime
    total = sum(shares.values()) or 1.0
    return {k: v / total for k, v in shares.most_common()}


def _replay_baseline(log_: list, repeats: int) -> tuple[float, int, int]:
    region = "us-east-1"
    ddb = boto3.client("dynamodb", region_name=region)
    sqs = boto3.client("sqs", region_name=region)
    url = f"https://sqs.{region}.amazonaws.com/{DEFAULT_ACCOUNT_ID}/{bl.QUEUE_NAME}"
    b = bl.BaselineScheduler(ddb, sqs, url)
    rp = Replayer(log_).attach([ddb, sqs])
    best = float("inf")
    sent = 0
    for _ in range(max(1, repeats)):
        rp.rewind()
        gc.collect()
        t = time.process_time()
        r = b.tick(FIRE)
        best = min(best, time.process_time() - t)
        sent = r["sent"]
    # The baseline streams: one Scan page at a time, then one request per item. Its peak is the same for
    # every page, so it is measured over the first page and its items (the whole replay under tracemalloc
    # would take minutes at 10,000).
    rp.rewind(stop_at=("Scan", 2))
    gc.collect()
    tracemalloc.start()
    try:
        b.tick(FIRE)
    except ReplayStop:
        pass
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    rp.detach()
    return best, sent, peak


def measure_planning(m: MotoResult, repeats: int) -> tuple[float, float]:
    """Process time of the planning alone, same schedules: the project's pure planners
    (``plan_fires``, scheduled session ids, ``plan_admission``; cron cache warm, as in a
    warm tick) against the baseline's (croniter's next fire per item)."""
    from chalicelib.adapters.dynamo import agent_from_item
    from chalicelib.domain.admission import Candidate, SlotShard, plan_admission, slot_limits
    from chalicelib.domain.ids import scheduled_session_id

    s = m.settings
    scheds = data.schedules(m.n, jitter=False, overlap=data.OverlapPolicy.SKIP, created_at=T0.timestamp())
    items = agent_items(scheds, s.due_shards)
    agents = [agent_from_item(x) for x in items]
    serialized = [x.serialize() for x in items]
    now = T0.timestamp()
    for a in agents:
        assert a.schedule is not None and a.next_run_at is not None  # every bench agent is scheduled
        dispatch.cron_for(a.schedule.cron_expression, a.schedule.timezone, a.agent_id)

    def project() -> float:
        gc.collect()
        t = time.process_time()
        cands = []
        for a in agents:
            spec = a.schedule
            assert spec is not None and a.next_run_at is not None
            plan = dispatch.plan_fires(
                agent_id=a.agent_id, spec=spec, cron=dispatch.cron_for(spec.cron_expression, spec.timezone, a.agent_id),
                next_run_at=a.next_run_at, active_runs=a.active_runs, now=now, lookahead=s.lookahead_seconds,
                late_tolerance=2 * s.lookahead_seconds,
            )
            for r in plan.runs:
                cands.append(Candidate(scheduled_session_id(a.agent_id, r.fire_at), a.tenant_id, a.agent_id,
                                       spec.priority, r.scheduled_for, a.timeout_seconds))
        shards = [SlotShard(name, 0, limit) for name, limit in slot_limits(s.max_concurrent_agents)]
        plan_admission(cands, shards, now=now, lookahead=s.lookahead_seconds, claim_grace=s.resend_grace_seconds)
        return time.process_time() - t

    def baseline() -> float:
        gc.collect()
        t = time.process_time()
        for it in serialized:
            bl.BaselineScheduler.next_fire(it, float(it["next_run_at"]["N"]))
        return time.process_time() - t

    return (min(project() for _ in range(max(1, repeats))), min(baseline() for _ in range(max(1, repeats))))


def measure_cpu(m: MotoResult, repeats: int = 3, log=print) -> CpuResult:
    t = time.perf_counter()
    cold, warm, sections, peak, fires = _replay_project(m.settings, m.tick_log, repeats)
    log(f"  replayed the project's tick {repeats + 3} times ({time.perf_counter() - t:.1f} s)")
    t = time.perf_counter()
    base_s, base_fires, base_peak = _replay_baseline(m.base_log, repeats)
    log(f"  replayed the baseline's tick {repeats} times and its first page under tracemalloc "
        f"({time.perf_counter() - t:.1f} s)")
    plan_s, base_plan_s = measure_planning(m, repeats)
    return CpuResult(
        n=m.n, fires=fires, plan_s=plan_s, base_plan_s=base_plan_s, cold_s=cold, warm_s=warm, repeats=repeats,
        sections=sections, peak_bytes=peak, base_s=base_s, base_fires=base_fires, base_peak_bytes=base_peak,
    )
