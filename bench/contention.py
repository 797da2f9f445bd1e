"""Contention: many workers finishing runs and admitting at once, on moto.

``threads`` threads share one container (one process, as warm Lambda workers
share the tables). Each takes the next run message off the work queue and
handles it with ``Worker.handle`` (claim, run, the end of the attempt with its
hand-off); a thread that finds no message calls the admission itself
(``Dispatcher.admit``), as a run-now or a tick would. The cap is small, so
nearly every finish races other finishes and admissions for the same slot
counter and the same waiting runs.

moto answers one request at a time (a lock around its request dispatch: each
DynamoDB request is atomic, as in DynamoDB); the threads interleave freely
between requests. Counted: conditional failures and cancelled transactions
(the optimistic retries of the run path), and the runs executing at once, which
must never exceed the cap (a run counts from its successful claim until its
worker starts the end of the attempt).
"""
from __future__ import annotations

import threading
import time
from collections import Counter, deque
from dataclasses import dataclass
from datetime import datetime, timezone

import boto3
from moto import mock_aws

from bench import data
from bench.aws_bench import FIRE, T0, agent_items, take
from bench.units import PathMeter, all_clients
from chalicelib.adapters.provision import provision
from chalicelib.adapters.tables import AgentTenantModel, SessionModel
from chalicelib.clock import FixedClock
from chalicelib.services import dispatch
from chalicelib.services import worker as worker_mod
from chalicelib.services.container import Container
from chalicelib.settings import Settings


class SteppingClock(FixedClock):
    """Time moves on by a millisecond at every reading, as real time does between requests: two
    admitters never read the same instant (which would give their transactions the same token)."""

    def now(self):
        return self.advance(0.001)


DEADLINE_S = 600.0  # wall-clock guard: a run path that stops making progress is reported, not waited for
IDLE_PAUSE_S = 0.02  # a thread with no message admits, then yields this long


@dataclass
class ContentionResult:
    threads: int
    cap: int
    runs: int
    succeeded: int
    executions: int  # agent executions started (each run must execute exactly once)
    max_executing: int
    admit_calls: int
    failures: Counter  # op -> conditional failures / cancelled transactions
    requests: Counter  # op -> requests
    results: Counter  # what Worker.handle returned
    counters_left: int  # slots still counted after the last run
    holders_left: int
    seconds: float

    @property
    def retries_per_run(self) -> float:
        return sum(self.failures.values()) / max(1, self.succeeded)

    @property
    def requests_per_run(self) -> float:
        return sum(self.requests.values()) / max(1, self.succeeded)


def measure_contention(threads: int = 32, cap: int = 4, runs: int = 200, log=print) -> ContentionResult:
    from moto.core.botocore_stubber import BotocoreStubber

    started = time.perf_counter()
    one_at_a_time = threading.RLock()
    stub_call = BotocoreStubber.__call__

    def serialized(self, *a, **k):
        with one_at_a_time:
            return stub_call(self, *a, **k)

    BotocoreStubber.__call__ = serialized  # type: ignore[method-assign]
    execute = worker_mod.execute
    try:
        with mock_aws():
            region = "us-east-1"
            sqs = boto3.client("sqs", region_name=region)
            sns = boto3.client("sns", region_name=region)
            settings = provision(Settings.from_env({}).with_(max_concurrent_agents=cap), sqs, sns)
            clock = SteppingClock(T0)
            c = Container(settings, clock=clock)
            scheds = data.schedules(runs, jitter=False, overlap=data.OverlapPolicy.ALLOW, created_at=T0.timestamp())
            with AgentTenantModel.batch_write() as batch:
                for m in agent_items(scheds, settings.due_shards):
                    batch.save(m)
            dispatch.cron_for.cache_clear()
            c.dispatcher.tick()
            clock.set(datetime.fromtimestamp(FIRE, tz=timezone.utc))

            meter = PathMeter()
            meter.measure_units = False
            meter.attach(all_clients(c))
            lock = threading.Lock()
            state = {"executing": 0, "max": 0, "executions": 0, "succeeded": 0, "admits": 0}
            counted: set[tuple[str, int]] = set()
            inbox: deque = deque()
            results: Counter = Counter()
            claim, finish = c.runs.claim, c.runs.finish

            def claimed(agent_id, session_id, attempt, *a, **k):
                res = claim(agent_id, session_id, attempt, *a, **k)
                if res.ok:
                    with lock:
                        counted.add((session_id, attempt))
                        state["executing"] += 1
                        state["max"] = max(state["max"], state["executing"])
                return res

            def finishing(s, *a, **k):
                with lock:
                    if (s.session_id, s.attempt) in counted:
                        counted.discard((s.session_id, s.attempt))
                        state["executing"] -= 1
                return finish(s, *a, **k)

            def executed(*a, **k):
                with lock:
                    state["executions"] += 1
                time.sleep(0.001)  # let the other threads in while this run "runs"
                return execute(*a, **k)

            c.runs.claim, c.runs.finish = claimed, finishing  # type: ignore[method-assign]
            worker_mod.execute = executed
            undo = [meter.wrap(c.runs, "claim", "claim"), meter.wrap(c.runs, "finish", "finish"),
                    meter.wrap(c.dispatcher, "admit", "admission"),
                    meter.wrap(worker_mod, "_next_waiting", "hand-off")]

            def next_message():
                with lock:
                    if not inbox:
                        inbox.extend(take(settings.work_queue_url, region))
                    return inbox.popleft() if inbox else None

            deadline = time.perf_counter() + DEADLINE_S

            def loop():
                w = worker_mod.Worker(c)
                while time.perf_counter() < deadline:
                    msg = next_message()
                    if msg is not None:
                        r = w.handle(msg)
                        with lock:
                            results[r] += 1
                            if r == "succeeded":
                                state["succeeded"] += 1
                        continue
                    with lock:
                        if state["succeeded"] >= runs:
                            return
                        state["admits"] += 1
                    c.dispatcher.admit()
                    time.sleep(IDLE_PAUSE_S)

            pool = [threading.Thread(target=loop, name=f"bench-worker-{k}") for k in range(threads)]
            for t in pool:
                t.start()
            for t in pool:
                t.join()
            meter.detach()
            for u in reversed(undo):
                u()
            c.runs.claim, c.runs.finish = claim, finish  # type: ignore[method-assign]
            used = sum(s.used for s in c.runs.slots(cap))
            holders = sum(1 for _ in SessionModel.scan(SessionModel.slot.exists()))
    finally:
        BotocoreStubber.__call__ = stub_call  # type: ignore[method-assign]
        worker_mod.execute = execute
    fails: Counter = Counter()
    for (phase, op), n in meter.failures.items():
        fails[f"{phase}: {op}"] += n
    res = ContentionResult(
        threads=threads, cap=cap, runs=runs, succeeded=state["succeeded"], executions=state["executions"],
        max_executing=state["max"], admit_calls=state["admits"], failures=fails, requests=meter.by_op(),
        results=results, counters_left=used, holders_left=holders, seconds=time.perf_counter() - started,
    )
    log(f"  {threads} threads, cap {cap}: {res.succeeded}/{runs} runs, {res.retries_per_run:.3f} optimistic retries "
        f"per run, at most {res.max_executing} executing ({res.seconds:.1f} s)")
    if res.max_executing > cap:
        raise RuntimeError(f"cap exceeded under contention: {res.max_executing} runs executing at cap {cap}")
    if res.succeeded != runs or res.executions != runs:
        raise RuntimeError(f"contention: {res.succeeded} of {runs} runs succeeded, {res.executions} executions "
                           f"({dict(results)})")
    return res
