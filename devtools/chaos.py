"""``make chaos``: days of scheduled runs on moto under faults, then five counts that must be 0.

    python -m devtools.chaos [--fires N] [--seed S] [--quick]

A discrete-event simulation, in-process on moto (``mock_aws``) with a fixed clock moved
only by the simulation:

- one tick per simulated minute (sometimes a second tick, of another container, racing
  it; sometimes killed after a random number of AWS calls, before or after that call);
- SQS is simulated from moto's queue: each message sent is taken off the queue and
  delivered when its delay has passed on the simulated clock, some twice (at once or
  later), some late; a handler that raises gets the message again after the queue's
  visibility timeout, at most ``MAX_RECEIVE_COUNT`` times;
- workers run as cooperative tasks (greenlets): an agent's run takes simulated time, so
  runs overlap and the cap matters; some workers are killed between claim and finish
  (their message redelivered after the visibility timeout, or lost for good), some at a
  random AWS call;
- every AWS call may hand the turn to another task (so ticks, workers and cancels
  interleave at call boundaries), and ``devtools.faults`` fails a share of DynamoDB and
  SQS calls (throttling, 5xx, a write that commits then reports failure, a retried commit);
- cancels race runs, run-now requests arrive with every priority, agents fail transiently
  and retry, one tenant's every-minute schedule (catch-up ALL) comes back thousands of
  fires behind (disabled for a day and a half before the run, enabled again late in it);
- besides cron, ``rate()`` schedules (anchored at a ``startAt`` off the minute) and
  ``at()`` schedules (one in UTC, one in Europe/Paris, saved again with a new time, often
  inside the tick's lookahead, after each fire) run along;
- backfills race the tick: over the last minutes of a live schedule (fires the tick
  planned or is planning at that moment), and over the far-behind schedule's disabled
  window at the moment it is enabled again, while its catch-up writes the same fires.
- limits are on for some agents: one runs at most one at a time (``maxConcurrency``), two
  share a pool of one run at a time and two starts a minute, and no tenant holds more than
  ``TENANT_CAP`` slots. The cap check covers them (never more executing than a tenant's cap,
  an agent's or a pool's ``maxConcurrency``; no keyed counter over its limit), and the
  priority check does not count a run that its own limit held back;
- an async agent answers 202 and calls back (progress, heartbeat, complete or fail), its
  callbacks sometimes duplicated (at once or much later), contradicted by another ending
  call, sent at the same instant as the 202, late past the heartbeat or the deadline (the
  sweep's timeout races them), after a cancel, or never (a heartbeat timeout). An attempt
  that two different ending calls both ended counts as a duplicate.

Then the faults stop, ticks and deliveries go on until nothing moves, and the stored data
(the sessions table) is checked against the fires computed independently from the cron
expressions (and the ``at()`` times and backfill windows that were accepted: every fire
of a window answered 202 must have run, or been skipped with a reason, once). It prints
one line and exits non-zero unless the five counts are 0:

    chaos: N fires, L lost, D duplicates, S stuck, C cap violations, P priority inversions

Dev tooling only: never imported by the Lambda code.
"""
# ruff: noqa: B010 - the harness patches methods in place (setattr keeps mypy quiet about it)
from __future__ import annotations

import argparse
import heapq
import json
import os
import random
import sys
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Callable
from zoneinfo import ZoneInfo

import greenlet  # type: ignore[import-untyped]

from devtools.faults import Faults

T0 = datetime(2026, 3, 2, 11, 59, 30, tzinfo=timezone.utc)
SECRET = "chaos-harness-secret-of-thirty-two-bytes"
CAP = 4
LOOKAHEAD = 75
FIRES_PER_MINUTE = 8.0  # of the agent set below (the schedule far behind is disabled most of the run),
# with the at() fires, the backfilled ones and the async agent's
FULL_FIRES = 10_000
SMOKE_FIRES = 350
FINAL = {"SUCCEEDED", "DEAD", "CANCELLED", "SKIPPED"}
ARCHIVE_AFTER = 900
BEHIND_HOURS = 36  # the schedule far behind was disabled this long before the run began  # final sessions older than this leave moto's table (see Archive)


class Killed(BaseException):
    """A Lambda stopped at this line (timeout, crash): nothing after it runs."""


# --- the agents ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class AgentSpec:
    tenant: str
    name: str
    cron: str
    priority: str
    kind: str = "echo"
    config: dict = field(default_factory=dict)
    overlap: str = "ALLOW"
    behind: bool = False  # disabled for most of the run, then enabled again (catch-up ALL)
    seconds: tuple[int, int] = (5, 40)  # simulated run time, uniform
    start_in: int = 0  # rate(): startAt (the anchor) this many seconds after the schedule is first saved
    zone: str = "UTC"
    callbacks: bool = False  # answers 202, then calls back (heartbeatSeconds 60)
    max_concurrency: int | None = None  # the agent's own limit (its implicit pool)
    pools: tuple[str, ...] = ()  # names in POOLS, of the agent's tenant

    @property
    def kind_of_schedule(self) -> str:
        return "at" if self.cron == "at" else "rate" if self.cron.startswith("rate(") else "cron"


AGENTS = (
    AgentSpec("tenant-a", "a-critical", "* * * * *", "CRITICAL", max_concurrency=1),
    AgentSpec("tenant-a", "a-flaky", "* * * * *", "LOW", "fail", {"times": 1, "category": "TRANSIENT"}),
    AgentSpec("tenant-a", "a-high", "*/2 * * * *", "HIGH", seconds=(20, 50)),
    AgentSpec("tenant-b", "b-normal", "* * * * *", "NORMAL", overlap="SKIP", pools=("b-key",)),
    AgentSpec("tenant-b", "b-flaky", "*/3 * * * *", "LOW", "fail", {"times": 2, "category": "TRANSIENT"}),
    AgentSpec("tenant-b", "b-high", "*/5 * * * *", "HIGH", "fail", {"times": 1, "category": "TIMEOUT"},
              pools=("b-key",)),
    AgentSpec("tenant-c", "c-behind", "* * * * *", "NORMAL", behind=True, seconds=(2, 10)),
    AgentSpec("tenant-c", "c-low", "*/4 * * * *", "LOW", seconds=(30, 55)),
    AgentSpec("tenant-c", "c-high", "* * * * *", "HIGH", seconds=(2, 12)),
    AgentSpec("tenant-a", "a-rate", "rate(3 minutes)", "NORMAL", start_in=45, seconds=(5, 30)),
    AgentSpec("tenant-b", "b-rate", "rate(7 minutes)", "HIGH", overlap="SKIP", start_in=100, seconds=(20, 60)),
    # "at": a one-off at() time, chosen when saved (again after each fire)
    AgentSpec("tenant-b", "b-at", "at", "HIGH", seconds=(5, 20)),
    AgentSpec("tenant-c", "c-at", "at", "CRITICAL", zone="Europe/Paris", seconds=(5, 20)),
    AgentSpec("tenant-b", "b-async", "*/2 * * * *", "NORMAL", seconds=(1, 4), callbacks=True),
)
# Limits switched on for some agents: a-critical runs one at a time; b-normal and b-high share a
# pool of one run at a time and two starts a minute; no tenant holds more than TENANT_CAP slots.
POOLS: dict[tuple[str, str], dict[str, Any]] = {
    ("tenant-b", "b-key"): {"maxConcurrency": 1, "throttle": {"limit": 2, "periodSeconds": 60}}}
TENANT_CAP = 3
BACKFILL_SHARE = 0.15  # of the simulated minutes that start a backfill over a live schedule
HEARTBEAT_SECONDS = 60


# --- the simulation core ---------------------------------------------------------------------------
@dataclass
class Task:
    name: str
    kind: str  # tick | worker | api
    kill_at: int | None = None  # killed at this AWS call (1-based) ...
    kill_after: bool = False  # ... after it returned (it committed) rather than before
    calls: int = 0
    body: dict | None = None
    receives: int = 1
    glet: Any = None


class Sim:
    """Events on the simulated clock; tasks are greenlets that yield on sleep and AWS calls."""

    def __init__(self, clock, rng: random.Random) -> None:
        self.clock = clock
        self.rng = rng
        self.heap: list = []
        self.seq = 0
        self.main = greenlet.getcurrent()
        self.chaos = True
        self.yield_share = 0.25

    @property
    def now(self) -> float:
        return self.clock.now().timestamp()

    def at(self, when: float, fn: Callable[[], None]) -> None:
        self.seq += 1
        heapq.heappush(self.heap, (when, self.seq, fn))

    def spawn(self, when: float, task: Task, fn: Callable[[], Any], done: Callable[[Task, BaseException | None], None]) -> None:
        def start() -> None:
            def body() -> None:
                err: BaseException | None = None
                try:
                    fn()
                except BaseException as exc:  # noqa: BLE001 - a task's end is reported to the harness
                    err = exc
                done(task, err)

            g = greenlet.greenlet(body, parent=self.main)
            g.task = task
            task.glet = g
            g.switch()

        self.at(when, start)

    def current_task(self) -> Task | None:
        return getattr(greenlet.getcurrent(), "task", None)

    def pause(self, until: float) -> None:
        """Called from a task: resume it at ``until`` (now: after the other ready tasks)."""
        g = greenlet.getcurrent()
        self.at(until, g.switch)
        self.main.switch()

    def step(self) -> bool:
        if not self.heap:
            return False
        when, _, fn = heapq.heappop(self.heap)
        if when > self.now:
            self.clock.set(datetime.fromtimestamp(when, tz=timezone.utc))
        fn()
        return True


def make_clock(sim_ref: list):
    from chalicelib.clock import FixedClock

    class SimClock(FixedClock):
        """Sleeping inside a task yields to the simulation, which moves the clock."""

        def sleep(self, seconds: float) -> None:
            sim = sim_ref[0] if sim_ref else None
            if seconds <= 0:
                return
            if sim is None or sim.current_task() is None:
                self.advance(seconds)
                return
            sim.pause(self.now().timestamp() + seconds)

    return SimClock(T0)


# --- SQS, simulated from moto's queue ----------------------------------------------------------------
def _moto_queue(url: str):
    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.sqs.models import sqs_backends

    return sqs_backends[DEFAULT_ACCOUNT_ID]["us-east-1"].get_queue(url.rstrip("/").rsplit("/", 1)[-1])


def _moto_table(name: str):
    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.dynamodb.models import dynamodb_backends

    return dynamodb_backends[DEFAULT_ACCOUNT_ID]["us-east-1"].tables[name]


def _attrs(item) -> dict:
    return {k: v.cast_value for k, v in item.attrs.items()}


def _fast_moto_queries():
    """moto answers a Query by sorting the whole table, then filtering it: O(table log table)
    DynamoType comparisons per query, which at days of history would make the run measure
    moto. Here only the items of the queried key are gathered, then sorted the same way, so
    the answer is the same. Returns a function that undoes it."""

    from moto.dynamodb.models.table import Table

    original = Table.query
    lock = threading.RLock()  # the narrowed item list is set on the table: one query at a time

    def query(self, hash_key, range_comparison, range_objs, limit, exclusive_start_key, scan_index_forward,
              projection_expressions, index_name=None, *args, hash_key_conditions=None, **kwargs):
        def call():
            return original(self, hash_key, range_comparison, range_objs, limit, exclusive_start_key,
                            scan_index_forward, projection_expressions, index_name, *args,
                            hash_key_conditions=hash_key_conditions, **kwargs)

        if index_name and hash_key_conditions:
            conds = [(a, v.type, v.value) for a, v in hash_key_conditions]

            def some_items():
                out = []
                for hash_set in self.items.values():
                    for item in (hash_set.values() if self.range_key_attr else (hash_set,)):
                        attrs = item.attrs
                        for a, t, v in conds:
                            x = attrs.get(a)
                            if x is None or x.type != t or x.value != v:
                                break
                        else:
                            out.append(item)
                return sorted(out, key=lambda x: (x.hash_key, x.range_key) if x.range_key else x.hash_key)
        elif not index_name and hash_key is not None and self.range_key_attr:
            def some_items():
                return sorted(self.items.get(hash_key, {}).values(), key=lambda x: x.range_key)
        else:
            return call()
        with lock:  # the app's thread pools (backfill writers, the conflict check) query the same table at once
            setattr(self, "all_items", some_items)
            try:
                return call()
            finally:
                del self.all_items

    setattr(Table, "query", query)

    # Every update re-tokenises and re-parses its UpdateExpression; the AST is deep-copied by
    # moto's validator before use, so one parse per distinct expression gives the same result.
    from moto.dynamodb.parsing.expressions import UpdateExpressionParser

    make = UpdateExpressionParser.__dict__["make"]
    parsed: dict = {}

    def cached_make(cls, expression_str):
        ast = parsed.get(expression_str)
        if ast is None:
            ast = parsed[expression_str] = make.__func__(cls, expression_str)
        return ast

    setattr(UpdateExpressionParser, "make", classmethod(cached_make))

    def undo() -> None:
        setattr(Table, "query", original)
        setattr(UpdateExpressionParser, "make", make)

    return undo


# --- the harness ---------------------------------------------------------------------------------------
@dataclass
class Result:
    fires: int
    lost: int
    duplicates: int
    stuck: int
    cap_violations: int
    inversions: int
    details: dict

    @property
    def line(self) -> str:
        return (f"chaos: {self.fires} fires, {self.lost} lost, {self.duplicates} duplicates, {self.stuck} stuck, "
                f"{self.cap_violations} cap violations, {self.inversions} priority inversions")

    @property
    def ok(self) -> bool:
        return not (self.lost or self.duplicates or self.stuck or self.cap_violations or self.inversions)


class Chaos:
    def __init__(self, fires: int, seed: int, log=None) -> None:
        self.target_fires = fires
        self.seed = seed
        self.rng = random.Random(seed)
        self.log = log or (lambda *a: None)
        self.stats: Counter = Counter()
        self.calls: Counter = Counter()
        self.minutes = max(30, int(fires / FIRES_PER_MINUTE))
        self.executing: dict[tuple[str, int], Task] = {}
        self.executing_agent: dict[tuple[str, int], str] = {}
        self.starts: Counter = Counter()
        self.dup_starts: list = []
        self.cap_violations: list = []
        self.inversions: list = []
        self.archive: dict[tuple[str, str], dict] = {}
        self.recent_runs: list[tuple[float, dict]] = []
        self.tokens: dict[str, str] = {}
        self.agent_ids: dict[str, str] = {}
        self.agent_of: dict[str, AgentSpec] = {}
        self.enabled_spans: dict[str, list[list[float | None]]] = {}
        self.anchors: dict[str, float] = {}  # rate(): the startAt each schedule was saved with
        self.at_fires: dict[str, list[float]] = {}  # at(): every time a save of it was answered 200
        self.at_saving: set[str] = set()
        self.backfilled: set[tuple[str, float]] = set()  # the fires of every window answered 202
        self.end = 0.0
        self.ended_by_call: dict[tuple[str, int], set[str]] = {}  # ending calls answered 200 as applied

    # --- set-up -----------------------------------------------------------------
    def _api(self, method: str, path: str, tenant: str, body=None) -> tuple[int, Any]:
        headers = {"Content-Type": "application/json", "Authorization": f"Bearer {self.tokens[tenant]}"}
        resp = self.client.http.request(method, path, headers=headers, body=json.dumps(body).encode() if body is not None else b"")
        return resp.status_code, (json.loads(resp.body) if resp.body else None)

    def _schedule(self, spec: AgentSpec, enabled: bool) -> None:
        aid = self.agent_ids[spec.name]
        body = {"cronExpression": spec.cron, "priority": spec.priority, "overlapPolicy": spec.overlap, "enabled": enabled}
        if spec.kind_of_schedule == "rate":
            anchor = self.anchors.setdefault(aid, float(int(self.sim.now + spec.start_in)))
            body["expression"] = body.pop("cronExpression")
            body["startAt"] = _iso(anchor)
        if spec.zone != "UTC":
            body["timezone"] = spec.zone
        if spec.behind:
            body.update(catchup="ALL", catchupWindowSeconds=7 * 86400)
        code, out = self._api("POST", f"/api/agents/{aid}/schedule", spec.tenant, body)
        if code != 200:
            raise RuntimeError(f"schedule {spec.name}: {code} {out}")
        spans = self.enabled_spans.setdefault(aid, [])
        if enabled and (not spans or spans[-1][1] is not None):
            spans.append([self.sim.now, None])
        elif not enabled and spans and spans[-1][1] is None:
            spans[-1][1] = self.sim.now

    def setup(self) -> None:
        """The agents and their schedules. The schedule far behind is created first and
        disabled at once; the clock then moves ``BEHIND_HOURS`` before the others exist, so
        when it is enabled again (late in the run) it is thousands of fires behind."""
        from chalicelib.api.auth import issue

        for spec in AGENTS:
            if spec.tenant not in self.tokens:
                self.tokens[spec.tenant] = issue(spec.tenant, SECRET)
        for (tenant, name), pool in POOLS.items():
            code, out = self._api("PUT", f"/api/pools/{name}", tenant, pool)
            if code != 200:
                raise RuntimeError(f"pool {name}: {code} {out}")
        for spec in sorted(AGENTS, key=lambda a: not a.behind):
            code, out = self._api("POST", "/api/agents", spec.tenant, {
                "name": spec.name, "kind": spec.kind, "config": spec.config, "maxRetries": 3, "timeoutSeconds": 90,
                **({"heartbeatSeconds": HEARTBEAT_SECONDS} if spec.callbacks else {}),
                **({"maxConcurrency": spec.max_concurrency} if spec.max_concurrency else {}),
                **({"pools": list(spec.pools)} if spec.pools else {})})
            if code != 201:
                raise RuntimeError(f"agent {spec.name}: {code} {out}")
            self.agent_ids[spec.name] = out["id"]
            self.agent_of[out["id"]] = spec
            if spec.kind_of_schedule == "at":
                self._save_at(spec, self.sim.now + self.rng.uniform(60, 600))
                continue
            self._schedule(spec, True)
            if spec.behind:
                self._schedule(spec, False)
                self.sim.clock.advance(BEHIND_HOURS * 3600)

    def _save_at(self, spec: AgentSpec, fire: float) -> int:
        """Save ``at()`` of ``fire`` (whole seconds) as wall time in the schedule's zone."""
        aid = self.agent_ids[spec.name]
        fire = float(int(fire))
        wall = datetime.fromtimestamp(fire, tz=ZoneInfo(spec.zone)).replace(tzinfo=None).isoformat()
        body = {"expression": f"at({wall})", "priority": spec.priority, "timezone": spec.zone}
        code, out = self._api("POST", f"/api/agents/{aid}/schedule", spec.tenant, body)
        self.stats[f"at-save:{code}"] += 1
        if code == 200:
            self.at_fires.setdefault(aid, []).append(fire)
        elif not self.sim.chaos or code < 500:  # only an injected fault may fail it
            raise RuntimeError(f"at() schedule {spec.name}: {code} {out}")
        return code

    def _at_task(self, when: float, spec: AgentSpec) -> None:
        """Save the next at() of an agent whose last one has fired: often inside the lookahead,
        so the save admits it while the tick may be planning the same schedule."""
        aid = self.agent_ids[spec.name]
        self.at_saving.add(aid)

        def call() -> None:
            try:
                ahead = self.rng.uniform(10, LOOKAHEAD) if self.rng.random() < 0.6 else self.rng.uniform(LOOKAHEAD, 600)
                fire = self.sim.now + ahead
                if fire <= self.end - 60:  # an at() time must fire before the run ends to be counted
                    self._save_at(spec, fire)
            finally:
                self.at_saving.discard(aid)

        self.sim.spawn(when, Task("api:at", "api"), call, self._api_done)

    def _fire_times(self, aid: str):
        from chalicelib.domain.cron import CronSchedule
        from chalicelib.domain.expressions import parse_expression

        spec = self.agent_of[aid]
        if spec.kind_of_schedule == "cron":
            return CronSchedule.parse(spec.cron, spec.zone, hash_id=aid)
        return parse_expression(spec.cron, spec.zone, hash_id=aid, anchor=self.anchors.get(aid))

    def _backfill_task(self, when: float, spec: AgentSpec, back: float | None = None,
                       window: tuple[float, float] | None = None, retries: int = 0) -> None:
        """``POST /backfill`` over ``window``, or over the ``back`` seconds before the moment it
        runs (sent again up to ``retries`` times after a 5xx, as a client would). On 202 every
        fire of the window must end up run (or skipped with a reason) once."""
        aid = self.agent_ids[spec.name]

        def call() -> None:
            lo, hi = window if window is not None else (float(int(self.sim.now - (back or 60))), float(int(self.sim.now)))
            body = {"from": _iso(lo), "to": _iso(hi), "maxRuns": 100,
                    "priority": self.rng.choice(("CRITICAL", "HIGH", "NORMAL", "LOW"))}
            code, out = self._api("POST", f"/api/agents/{aid}/backfill", spec.tenant, body)
            self.stats[f"backfill:{code}"] += 1
            if code != 202:
                if code < 500:
                    raise RuntimeError(f"backfill {spec.name} {body}: {code} {out}")
                if retries > 0:
                    self._backfill_task(self.sim.now + self.rng.uniform(1, 5), spec, back, (lo, hi), retries - 1)
                return
            if window is not None and spec.behind:
                self.stats["behind-backfill:202"] += 1
            self.stats["backfill_created"] += out["created"]
            fires = self._fire_times(aid)
            t = fires.next_after(datetime.fromtimestamp(lo - 0.001, tz=timezone.utc))
            while t is not None and t.timestamp() < hi:
                self.backfilled.add((aid, t.timestamp()))
                t = fires.next_after(t)

        self.sim.spawn(when, Task("api:backfill", "api"), call, self._api_done)

    # --- the seams --------------------------------------------------------------------
    def _install(self):
        from botocore.client import BaseClient

        import chalicelib.services.worker as worker_mod
        from chalicelib.adapters.runstore import RunStore
        from chalicelib.services.dispatch import Dispatcher

        inner_call = BaseClient._make_api_call
        sim = self.sim
        harness = self

        def make_api_call(client, operation, params):
            task = sim.current_task()
            harness.calls[(task.kind if task else "harness", operation)] += 1
            if task is None or not sim.chaos:
                return inner_call(client, operation, params)
            task.calls += 1
            if task.kill_at == task.calls and not task.kill_after:
                raise Killed(f"{task.name} killed before {operation}")
            if sim.rng.random() < sim.yield_share:
                sim.pause(sim.now)  # another task's calls may go first
            out = inner_call(client, operation, params)
            if task.kill_at == task.calls and task.kill_after:
                raise Killed(f"{task.name} killed after {operation}")
            return out

        setattr(BaseClient, "_make_api_call", make_api_call)

        real_execute = worker_mod.execute

        def execute(kind, config, ctx, deps, budget):
            return harness._execute(real_execute, kind, config, ctx, deps, budget)

        worker_mod.execute = execute

        real_end_attempt = worker_mod.end_attempt

        def end_attempt(c, s, t, now, duration_ms, **kw):
            task = sim.current_task()
            if task is not None:
                task.before = harness._pending_snapshot()
                task.before_keys = harness._key_usage()
            return real_end_attempt(c, s, t, now, duration_ms, **kw)

        worker_mod.end_attempt = end_attempt

        real_admit = Dispatcher.admit

        def admit(dispatcher, now=None, **kw):
            task = sim.current_task()
            if task is not None:
                task.before = harness._pending_snapshot()
                task.before_keys = harness._key_usage()
            return real_admit(dispatcher, now, **kw)

        setattr(Dispatcher, "admit", admit)

        real_store_admit = RunStore.admit

        def store_admit(store, shard, admits, sessions, now, **kw):
            done, gone = real_store_admit(store, shard, admits, sessions, now, **kw)
            if done:
                harness._check_order([a.candidate for a in done], now, "admit")
            return done, gone

        setattr(RunStore, "admit", store_admit)

        real_finish = RunStore.finish

        def finish(store, s, t, now, duration_ms, hand_off=None, count_agent=True, release_if_idle=False, keep=None,
                   **kw):
            res = real_finish(store, s, t, now, duration_ms, hand_off=hand_off, count_agent=count_agent,
                              release_if_idle=release_if_idle, keep=keep, **kw)
            if res.ok and res.handed_off is not None and hand_off is not None:
                harness._check_order([hand_off[1].candidate], now, "hand-off")
            if res.ok and res.kept and keep is not None:
                harness._check_order([keep.candidate], now, "keep")
            return res

        setattr(RunStore, "finish", finish)

        def restore() -> None:
            setattr(BaseClient, "_make_api_call", inner_call)
            worker_mod.execute = real_execute
            worker_mod.end_attempt = real_end_attempt
            setattr(Dispatcher, "admit", real_admit)
            setattr(RunStore, "admit", real_store_admit)
            setattr(RunStore, "finish", real_finish)

        return restore

    # --- what the harness observes -----------------------------------------------------
    def _pending_snapshot(self) -> dict[str, tuple]:
        """The runs waiting for a slot, read from moto's storage (no AWS call):
        {session: (attempt, order key)}."""
        out = {}
        for item in self.sessions_table.all_items():
            a = item.attrs
            rank = a.get("pending_rank")
            if rank is None or a.get("pending_shard") is None:
                continue
            prio, eligible_ms, sid = rank.value.split("#", 2)  # eligible_ms: "B..." in the backfill lane
            out[sid] = (int(a["attempt"].value), (int(prio), int(eligible_ms.lstrip("B")) / 1000.0, sid),
                        eligible_ms.startswith("B"), a["agent_id"].value)
        return out

    @staticmethod
    def _head(pending: dict[str, tuple], horizon: float) -> set[str]:
        """The runs a hand-off reads: the head of the pending order in *stored* priority (live
        before backfill, then eligible time, id) until as many as it wants are eligible. A run
        that aged behind a deeper backlog is out of its sight by design; the tick's admission
        reads the oldest runs of each priority that ages and starts it."""
        from chalicelib.services.dispatch import PENDING_READ_EXTRA, PENDING_READ_FACTOR

        want = PENDING_READ_FACTOR + PENDING_READ_EXTRA
        order = sorted(pending.items(), key=lambda kv: (kv[1][1][0], kv[1][2], kv[1][1][1], kv[0]))
        head, eligible = set(), 0
        for sid, (_attempt, okey, _backfill, _agent) in order:
            head.add(sid)
            eligible += okey[1] <= horizon
            if eligible >= want:
                break
        return head

    def _key_usage(self) -> dict[str, int]:
        """Every keyed counter (concurrency keys and throttle windows), read from moto's storage."""
        from chalicelib.domain.admission import KEY_PREFIX

        out = {}
        for item in self.control_table.all_items():
            pk = item.hash_key.cast_value if hasattr(item.hash_key, "cast_value") else str(item.hash_key)
            if pk.startswith(KEY_PREFIX) and "used" in item.attrs:
                out[pk] = int(item.attrs["used"].cast_value)
        return out

    def _limits_of(self, agent_id: str) -> list[tuple[str, int | None, tuple[int, int] | None]]:
        """The keyed limits of an agent's runs as the harness set them up (independent of the
        admission code): (concurrency key, max running or None, (starts, period) or None)."""
        from chalicelib.domain.admission import agent_key, pool_key, tenant_key

        spec = self.agent_of.get(agent_id)
        if spec is None:
            return []
        out: list[tuple[str, int | None, tuple[int, int] | None]] = [(tenant_key(spec.tenant), TENANT_CAP, None)]
        if spec.max_concurrency is not None:
            out.append((agent_key(spec.tenant, agent_id), spec.max_concurrency, None))
        for name in spec.pools:
            pool = POOLS[(spec.tenant, name)]
            throttle = pool.get("throttle")
            out.append((pool_key(spec.tenant, name), pool.get("maxConcurrency"),
                        (throttle["limit"], throttle["periodSeconds"]) if throttle else None))
        return out

    def _uses(self, agent_id: str, eligible_at: float, now: float) -> list[tuple[str, int]]:
        """The counters a run of ``agent_id`` needs room in to start now: (key, limit)."""
        from chalicelib.domain.admission import window_key

        out = []
        for key, concurrency, throttle in self._limits_of(agent_id):
            if concurrency is not None:
                out.append((key, concurrency))
            if throttle is not None:
                out.append((window_key(key, throttle[1], max(now, eligible_at)), throttle[0]))
        return out

    def _held_by_own_limit(self, agent_id: str, eligible_at: float, now: float, usage: list[dict[str, int]],
                           taken: Counter) -> bool:
        """A waiting run that one of its keyed limits (tenant cap, agent, pool) held back: full
        when admission began, or full after it without the runs this admission let in."""
        for key, limit in self._uses(agent_id, eligible_at, now):
            if any(u.get(key, 0) >= limit for u in usage[:1]) or \
                    any(u.get(key, 0) - taken[key] >= limit for u in usage[1:]):
                self.stats["held_by_own_limit"] += 1
                return True
        return False

    def _check_order(self, admitted, now: float, how: str) -> None:
        """A run just took a slot: no run of a higher place in the admission order, eligible
        now, may have waited since before this admission began and still wait after it."""
        task = self.sim.current_task()
        before = getattr(task, "before", None) if task is not None else None
        if before is None:
            return
        after = self._pending_snapshot()
        horizon = now + LOOKAHEAD
        container = getattr(self, "container", None)
        aging = container.settings.priority_aging_seconds if container is not None else 0

        def level(rank: int, eligible_at: float, backfill: bool) -> int:  # as admission: aged toward HIGH
            if aging <= 0 or rank <= 1 or backfill or now - eligible_at < aging:
                return rank
            return max(1, rank - int((now - eligible_at) // aging))

        taken: Counter = Counter()
        for cand in admitted:
            for k, _limit in self._uses(cand.agent_id, cand.eligible_at, now):
                taken[k] += 1
        usage = [getattr(task, "before_keys", None) or {}, self._key_usage()]
        seen = self._head(before, horizon) if how == "hand-off" else None
        for cand in admitted:
            key = (level(cand.priority.rank, cand.eligible_at, cand.backfill), cand.eligible_at, cand.session_id)
            for sid, (attempt, okey, backfill, agent_id) in after.items():
                okey = (level(okey[0], okey[1], backfill), okey[1], okey[2])
                if sid in before and before[sid][0] == attempt and okey[1] <= horizon and okey < key \
                        and okey[0] < key[0] and not self._held_by_own_limit(agent_id, okey[1], now, usage, taken) \
                        and (seen is None or sid in seen):
                    self.inversions.append((now, how, cand.session_id, cand.priority.value, sid, okey))
                    self.log(f"priority inversion at {now}: {how} {cand.session_id} ({cand.priority.value}) "
                             f"while {sid} (rank {okey[0]}) waited")
                    break

    def _execute(self, real_execute, kind, config, ctx, deps, budget):
        """An agent's run: it takes simulated time; the harness counts what executes at once."""
        from chalicelib.agents.executor import Outcome
        from chalicelib.domain.model import ErrorCategory

        task = self.sim.current_task()
        key = (ctx.session_id, ctx.attempt)
        now = self.sim.now
        self.starts[key] += 1
        if self.starts[key] > 1:
            self.dup_starts.append((now, key))
            self.log(f"duplicate start at {now}: {key}")
        if any(k[0] == ctx.session_id for k in self.executing):
            self.dup_starts.append((now, key, "overlapping attempt"))
            self.log(f"two attempts of {ctx.session_id} execute at once at {now}")
        self.executing[key] = task
        self.executing_agent[key] = ctx.agent_id
        self.stats["started"] += 1
        if len(self.executing) > CAP:
            self.cap_violations.append((now, sorted(self.executing)))
            self.log(f"cap violation at {now}: {len(self.executing)} executing")
        self._check_keyed_caps(now)
        self._check_counters(now)
        try:
            spec = self.agent_of.get(ctx.agent_id)
            lo, hi = spec.seconds if spec else (5, 30)
            seconds = self.rng.uniform(lo, hi)
            end = round(now + seconds, 3)  # the clock counts microseconds: whole milliseconds end
            die = self.sim.chaos and self.rng.random() < 0.02
            die_at = now + self.rng.uniform(0, seconds) if die else None
            while end - self.sim.now > 0.0005:
                step = min(15.0, end - self.sim.now)  # the agent looks for a cancel this often
                if die_at is not None and self.sim.now + step >= die_at:
                    self.sim.pause(die_at)
                    self.stats["killed_running"] += 1
                    raise Killed("worker killed while its agent ran")
                self.sim.pause(self.sim.now + step)
                if ctx.cancelled():
                    return Outcome(ok=False, category=ErrorCategory.CANCELLED, message="cancelled")
            if spec is not None and spec.callbacks:
                self._plan_callbacks(ctx)
                return Outcome(ok=False, accepted=True, message="accepted")
            return real_execute(kind, config, ctx, deps, budget)
        finally:
            self.executing.pop(key, None)
            self.executing_agent.pop(key, None)

    # --- an async agent's callbacks ------------------------------------------------------------
    def _plan_callbacks(self, ctx) -> None:
        """What the agent will send about this attempt, and when (from its 202 on)."""
        rng, now = self.rng, self.sim.now
        sid, attempt, token = ctx.session_id, ctx.attempt, ctx.callback["token"]
        if rng.random() < 0.08:
            self.stats["cb_silent"] += 1  # never calls back: the heartbeat timeout ends it
            return
        calls: list[tuple[float, str, dict[str, Any]]] = [
            (now + rng.uniform(1, 20), "progress", {"progress": rng.randint(1, 60), "message": "working"})]
        if rng.random() < 0.7:
            calls.append((now + rng.uniform(20, 50), "heartbeat", {"details": {"attempt": attempt}}))
        end: tuple[str, dict[str, Any]]
        if rng.random() < 0.15:
            end = ("fail", {"message": "upstream unavailable", "category": "TRANSIENT"})
        else:
            end = ("complete", {"output": {"attempt": attempt}, "usage": {"inputTokens": 3}})
        at = now if rng.random() < 0.05 else now + rng.uniform(2, 88)  # with the 202, or up to past the deadline
        calls.append((at, *end))
        if rng.random() < 0.25:  # the ending call again: a retry at once, or much later
            calls.append((at + (rng.uniform(0, 3) if rng.random() < 0.5 else rng.uniform(30, 600)), *end))
            self.stats["cb_repeated"] += 1
        if rng.random() < 0.1:  # another ending call that contradicts it
            other: tuple[str, dict[str, Any]] = (
                ("fail", {"message": "changed my mind"}) if end[0] == "complete" else ("complete", {"output": "late"}))
            calls.append((at + rng.uniform(0, 100), *other))
            self.stats["cb_contradicted"] += 1
        for when, action, body in calls:
            self._callback_task(when, sid, attempt, token, action, body)

    def _callback_task(self, when: float, sid: str, attempt: int, token: str, action: str, body: dict,
                       tries: int = 1) -> None:
        def call() -> None:
            resp = self.client.http.request(
                "POST", f"/api/callbacks/{sid}/{attempt}/{action}", body=json.dumps(body).encode(),
                headers={"Content-Type": "application/json", "Authorization": f"Bearer {token}"})
            code = resp.status_code
            self.stats[f"cb_{action}:{code}"] += 1
            if code >= 500:
                self.stats[f"cb_{action}:{code}:{json.loads(resp.body or b'{}').get('code')}"] += 1
            if code >= 500 and tries < 4:  # the agent tries again, as the contract asks
                self._callback_task(self.sim.now + 5, sid, attempt, token, action, body, tries + 1)
            elif code == 200 and action in ("complete", "fail"):
                self.ended_by_call.setdefault((sid, attempt), set()).add(json.dumps([action, body], sort_keys=True))
            elif code not in (200, 409, 500, 503):
                self.log(f"callback {action} of {sid}#{attempt}: {code} {resp.body[:200]!r}")
                self.stats["cb_unexpected"] += 1

        self.sim.spawn(when, Task(f"api:callback-{action}", "api"), call, self._api_done)

    def _check_keyed_caps(self, now: float) -> None:
        """What executes at once never exceeds a tenant's cap, an agent's maxConcurrency or a
        pool's; the keyed counters never go over their limit (nor under 0)."""
        running: Counter = Counter()
        limit_of: dict[str, int] = {}
        for agent_id in self.executing_agent.values():
            for key, concurrency, _throttle in self._limits_of(agent_id):
                if concurrency is not None:
                    running[key] += 1
                    limit_of[key] = concurrency
        for key, n in running.items():
            kind = key.split("#", 2)[1]  # T (tenant), A (agent), P (pool)
            self.stats[f"peak_running_{kind}"] = max(self.stats[f"peak_running_{kind}"], n)
            if n > limit_of[key]:
                self.cap_violations.append((now, key, n))
                self.log(f"keyed cap violation at {now}: {n} executing under {key} (limit {limit_of[key]})")
        limits = {}
        for agent_id in self.agent_of:
            for key, concurrency, throttle in self._limits_of(agent_id):
                if concurrency is not None:
                    limits[key] = concurrency
                if throttle is not None:
                    limits[f"{key}#W{throttle[1]}#"] = throttle[0]
        for key, used in self._key_usage().items():
            limit = limits.get(key, limits.get(key.rsplit("#", 1)[0] + "#"))
            if used < 0 or (limit is not None and used > limit):
                self.cap_violations.append((now, key, used))
                self.log(f"keyed counter {key} at {used} (limit {limit}) at {now}")

    def _check_counters(self, now: float) -> None:
        from chalicelib.domain.admission import slot_limits

        for name, limit in slot_limits(CAP):
            item = self.control_table.get_item(_dyn(f"SLOTS#{name}"), None)
            used = int(item.attrs["used"].cast_value) if item is not None and "used" in item.attrs else 0
            if used > limit or used < 0:
                self.cap_violations.append((now, name, used))
                self.log(f"slot counter {name} at {used} (limit {limit}) at {now}")

    # --- events -------------------------------------------------------------------------
    def _tick(self, container, racing: bool) -> None:
        task = Task(f"tick{'-race' if racing else ''}@{int(self.sim.now)}", "tick")
        if self.sim.chaos and self.rng.random() < 0.06:
            task.kill_at = self.rng.randint(1, 40)
            task.kill_after = self.rng.random() < 0.5
        self.sim.spawn(self.sim.now, task, container.dispatcher.tick, self._tick_done)

    def _tick_done(self, task: Task, err: BaseException | None) -> None:
        if err is None:
            self.stats["ticks"] += 1
        elif isinstance(err, Killed):
            self.stats["ticks_killed"] += 1
        else:
            self.stats["ticks_failed"] += 1
            self.stats[f"tick_error:{type(err).__name__}"] += 1
            self._unexpected(task, err)

    def _deliver(self, when: float, body: dict, receives: int = 1) -> None:
        task = Task(f"worker:{body['s']}#{body['n']}", "worker", body=body, receives=receives)
        if self.sim.chaos and self.rng.random() < 0.01:
            task.kill_at = self.rng.randint(1, 6)
            task.kill_after = self.rng.random() < 0.5
        self.sim.spawn(when, task, lambda: self.container.worker.handle(body), self._worker_done)

    def _worker_done(self, task: Task, err: BaseException | None) -> None:
        from chalicelib.errors import SchedulerError

        if err is None:
            self.stats["handled"] += 1
            return
        if isinstance(err, Killed):
            self.stats["workers_killed"] += 1
            if self.sim.chaos and self.rng.random() < 0.5:
                self.stats["messages_lost"] += 1  # deleted by something else, or never seen again
                return
        elif isinstance(err, SchedulerError):
            self.stats["handler_errors"] += 1
        else:
            self.stats["handler_crashes"] += 1
            self.stats[f"crash:{type(err).__name__}:{err}"] += 1
            self._unexpected(task, err)
        from chalicelib.adapters.provision import MAX_RECEIVE_COUNT, WORK_QUEUE_VISIBILITY_SECONDS

        if task.receives >= MAX_RECEIVE_COUNT:
            self.stats["to_dlq"] += 1
            return
        self._deliver(self.sim.now + WORK_QUEUE_VISIBILITY_SECONDS, task.body or {}, task.receives + 1)

    def _unexpected(self, task: Task, err: BaseException) -> None:
        from chalicelib.errors import SchedulerError

        if isinstance(err, SchedulerError):
            return
        import traceback

        self.log(f"{task.name}: unexpected " + "".join(traceback.format_exception(err))[-1500:])

    def _drain_queues(self) -> None:
        q = self.work_q
        if q._messages:
            now = self.sim.now
            for m in list(q._messages):
                delay = 0
                if m.delayed_until and m.sent_timestamp:
                    delay = round((m.delayed_until - int(m.sent_timestamp)) / 1000)
                body = json.loads(m.body)
                when = now + delay
                if self.sim.chaos and self.rng.random() < 0.05:
                    when += self.rng.uniform(1, 120)  # late
                    self.stats["late"] += 1
                self._deliver(when, body)
                if self.sim.chaos and self.rng.random() < 0.05:  # delivered twice
                    again = when + (self.rng.uniform(0, 3) if self.rng.random() < 0.5 else self.rng.uniform(30, 900))
                    self._deliver(again, body)
                    self.stats["twice"] += 1
                self.recent_runs.append((now, body))
            q._messages = []
        if self.dlq_q._messages:
            self.dlq_q._messages = []
        if len(self.recent_runs) > 400:
            self.recent_runs = self.recent_runs[-200:]

    def _minute(self, container_b) -> None:
        """What happens each simulated minute besides the tick: races, cancels, run-now."""
        rng = self.rng
        self._tick(self.container, racing=False)
        if self.sim.chaos and rng.random() < 0.1:
            self.sim.at(self.sim.now + rng.choice((0, 0, 0.5, 2)), lambda: self._tick(container_b, racing=True))
        if self.sim.chaos and rng.random() < 0.25 and self.recent_runs:
            _, body = rng.choice(self.recent_runs[-30:])
            self._api_task(self.sim.now + rng.uniform(0, 59), "cancel", self._tenant_of(body["a"]),
                           "POST", f"/api/agents/{body['a']}/sessions/{body['s']}/cancel", {})
        if self.sim.chaos and rng.random() < 0.1:
            pending = sorted(self._pending_snapshot())
            agent_of_sid = {}
            if pending:
                sid = rng.choice(pending)
                for item in self.sessions_table.all_items():
                    if item.attrs["session_id"].cast_value == sid:
                        agent_of_sid[sid] = item.attrs["agent_id"].cast_value
                if sid in agent_of_sid:
                    aid = agent_of_sid[sid]
                    self._api_task(self.sim.now + rng.uniform(0, 59), "cancel-waiting", self._tenant_of(aid),
                                   "POST", f"/api/agents/{aid}/sessions/{sid}/cancel", {})
        if self.sim.chaos and rng.random() < 0.2:
            spec = rng.choice(AGENTS)
            aid = self.agent_ids[spec.name]
            prio = rng.choice(("CRITICAL", "HIGH", "NORMAL", "LOW"))
            self._api_task(self.sim.now + rng.uniform(0, 59), "run-now", spec.tenant, "POST",
                           f"/api/agents/{aid}/run", {"priority": prio})
        if self.sim.chaos and rng.random() < BACKFILL_SHARE:
            # The last minutes of a live schedule: the tick planned those fires, or is planning
            # the newest at this moment; the backfill must add nothing twice.
            spec = rng.choice([a for a in AGENTS if a.kind_of_schedule != "at" and not a.behind])
            self._backfill_task(self.sim.now + rng.uniform(0, 59), spec, back=rng.uniform(60, 600))
        for spec in AGENTS:
            aid = self.agent_ids[spec.name]
            fired = self.at_fires.get(aid, [])
            if spec.kind_of_schedule == "at" and self.sim.chaos and aid not in self.at_saving \
                    and (not fired or fired[-1] < self.sim.now) and rng.random() < 0.35:
                self._at_task(self.sim.now + rng.uniform(0, 59), spec)

    def _tenant_of(self, agent_id: str) -> str:
        return self.agent_of[agent_id].tenant

    def _api_task(self, when: float, what: str, tenant: str, method: str, path: str, body) -> None:
        task = Task(f"api:{what}", "api")

        def call() -> None:
            code, out = self._api(method, path, tenant, body)
            self.stats[f"{what}:{code}"] += 1

        self.sim.spawn(when, task, call, self._api_done)

    def _api_done(self, task: Task, err: BaseException | None) -> None:
        if err is not None:
            self.stats[f"{task.name}:error:{type(err).__name__}"] += 1
            if not isinstance(err, Killed):
                self.log(f"{task.name}: {type(err).__name__}: {err}")

    def _archive(self) -> None:
        """Final sessions older than an hour leave moto's table for the harness's archive,
        as TTL would remove them later: moto answers every index query by reading the whole
        table, so a table of days of history would make the run measure moto. The check at
        the end reads both."""
        cutoff = self.sim.now - ARCHIVE_AFTER
        table = self.sessions_table
        for item in list(table.all_items()):
            a = item.attrs
            if a["status"].cast_value in FINAL and "finished_at" in a and float(a["finished_at"].cast_value) < cutoff:
                key = (a["agent_id"].cast_value, a["session_id"].cast_value)
                if key in self.archive:
                    self.stats["archived_twice"] += 1
                self.archive[key] = item.to_json()["Attributes"]
                table.delete_item(item.hash_key, item.range_key)

    # --- the run --------------------------------------------------------------------------
    def run(self) -> Result:
        import boto3
        from chalice.test import Client
        from moto import mock_aws

        from bench import moto_speed
        from chalicelib.adapters.provision import provision
        from chalicelib.services import wiring
        from chalicelib.services.container import Container
        from chalicelib.settings import Settings

        for k, v in (("AWS_ACCESS_KEY_ID", "testing"), ("AWS_SECRET_ACCESS_KEY", "testing"),
                     ("AWS_DEFAULT_REGION", "us-east-1"), ("AWS_ACCOUNT_ID_ENDPOINT_MODE", "disabled"),
                     ("POWERTOOLS_METRICS_DISABLED", "true")):
            os.environ.setdefault(k, v)
        os.environ.pop("AWS_ENDPOINT_URL", None)

        undo_moto = moto_speed.apply()
        undo_query = _fast_moto_queries()
        saved_random = random.getstate()
        random.seed(self.seed)  # backoff jitter
        real_uuid4 = uuid.uuid4
        ids = random.Random(self.seed + 1)
        setattr(uuid, "uuid4", lambda: uuid.UUID(int=ids.getrandbits(128), version=4))
        import secrets as secrets_mod

        real_token_hex = secrets_mod.token_hex
        setattr(secrets_mod, "token_hex", lambda n=16: ids.getrandbits(8 * n).to_bytes(n, "big").hex())
        sim_ref: list = []
        clock = make_clock(sim_ref)
        self.sim = Sim(clock, random.Random(self.seed + 2))
        sim_ref.append(self.sim)
        faults = Faults(seed=self.seed + 3)
        restore = None
        try:
            with mock_aws():
                base = Settings.from_env({"SCHEDULER_JWT_SECRET": SECRET}).with_(
                    max_concurrent_agents=CAP, due_shards=2, tenant_max_concurrent=TENANT_CAP)
                settings = provision(base, boto3.client("sqs", region_name="us-east-1"),
                                     boto3.client("sns", region_name="us-east-1"))
                self.container = Container(settings, clock=clock)
                container_b = Container(settings, clock=clock)  # another Lambda container: the racing tick
                wiring.set_container(self.container)
                self.sessions_table = _moto_table(settings.sessions_table)
                self.control_table = _moto_table(settings.control_table)
                self.work_q = _moto_queue(settings.work_queue_url)
                self.dlq_q = _moto_queue(settings.dlq_url)
                from app import app

                with Client(app) as client, faults.installed():
                    self.client = client
                    faults.enabled = False
                    self.setup()
                    restore = self._install()
                    self._add_faults(faults)
                    faults.enabled = True
                    result = self._simulate(container_b, faults)
                    faults.enabled = False
                    return result
        finally:
            if restore is not None:
                restore()
            wiring.set_container(None)
            setattr(uuid, "uuid4", real_uuid4)
            setattr(secrets_mod, "token_hex", real_token_hex)
            random.setstate(saved_random)
            undo_query()
            undo_moto()

    @staticmethod
    def _add_faults(faults: Faults) -> None:
        dynamo = ("GetItem", "PutItem", "UpdateItem", "DeleteItem", "Query", "Scan", "BatchGetItem", "TransactWriteItems")
        writes = ("PutItem", "UpdateItem", "TransactWriteItems", "SendMessageBatch", "SendMessage")
        sqs = ("SendMessageBatch", "SendMessage")
        faults.add(dynamo + sqs, "throttle", share=0.02)
        faults.add(dynamo + sqs, "server_error", share=0.01)
        faults.add(writes, "lost_answer", share=0.01)
        faults.add(writes, "retried_commit", share=0.01)

    def _simulate(self, container_b, faults: Faults) -> Result:
        sim = self.sim
        start = sim.now
        end = start + self.minutes * 60
        behind = next(s for s in AGENTS if s.behind)
        enable_at = start + self.minutes * 60 * 0.7
        self.end = end
        sim.at(enable_at, lambda: self._api_task_direct(lambda: self._schedule(behind, True)))
        # The first hour of its disabled time, backfilled while its catch-up writes the same fires.
        # (From two minutes after its first save: the fires planned by that save ran long ago, and the
        # harness has archived their sessions, which a backfill would not find.)
        lo = float(int(self.enabled_spans[self.agent_ids[behind.name]][0][0] or start) + 120)
        sim.at(enable_at, lambda: self._backfill_task(sim.now, behind, window=(lo, lo + 3600), retries=5))
        m = 0
        while start + 60 * m <= end:
            sim.at(start + 60 * m, lambda: self._minute(container_b))
            m += 1
        next_archive = start + 300
        while sim.heap and sim.heap[0][0] <= end:
            sim.step()
            self._drain_queues()
            if sim.now >= next_archive:
                self._archive()
                next_archive = sim.now + 300
                if int(sim.now - start) % 21600 < 300:
                    self.log(f"{(sim.now - start) / 3600:.0f} h simulated, {self.stats['started']} runs started")
        # --- quiet: no faults, no kills, no races; schedules stop a few minutes after the end
        sim.chaos = False
        faults.enabled = False
        self.log(f"chaos over at {sim.now - start:.0f} s simulated; {dict(faults.injected)} faults injected")
        self._quiesce(end)
        return self._check(start, end)

    def _api_task_direct(self, fn) -> None:
        self.sim.spawn(self.sim.now, Task("api:schedule", "api"), fn, self._api_done)

    def _quiesce(self, end: float) -> None:
        sim = self.sim
        minute = end
        stopped = False
        quiet = 0
        for _ in range(24 * 60):  # at most a simulated day
            minute += 60
            sim.at(minute, lambda: self._tick(self.container, racing=False))
            while sim.heap and sim.heap[0][0] <= minute:
                sim.step()
                self._drain_queues()
            if not stopped and minute >= end + 300:
                for spec in AGENTS:
                    if spec.kind_of_schedule != "at":  # an at() schedule has fired: nothing to stop
                        self._api_task_direct(lambda spec=spec: self._schedule(spec, False))
                stopped = True
                continue
            # quiet: nothing left to deliver, every session final; then three more ticks
            # (the reconciler needs two to repair a counter)
            quiet = quiet + 1 if stopped and not sim.heap and self._all_final() else 0
            if int(minute - end) % 3600 < 60:  # what keeps it from being quiet, hourly
                busy = [(i.attrs["session_id"].value, i.attrs["status"].value, i.attrs.get("stage"))
                        for i in self.sessions_table.all_items() if i.attrs["status"].value not in FINAL]
                self.log(f"quiescing {(minute - end) / 3600:.0f} h: {len(busy)} not final {busy[:5]}, "
                         f"{len(sim.heap)} events waiting")
            if quiet > 3:
                return
        self.log("not quiescent after a simulated day")

    def _all_final(self) -> bool:
        return all(i.attrs["status"].cast_value in FINAL for i in self.sessions_table.all_items())

    # --- the check -----------------------------------------------------------------------------
    def _check(self, start: float, end: float) -> Result:
        from chalicelib.adapters.dynamo import session_from_item
        from chalicelib.adapters.tables import SessionModel
        from chalicelib.domain.ids import scheduled_session_id

        stored = []
        seen = set()
        dup_rows = 0
        for m in SessionModel.scan():
            s = session_from_item(m)
            if s is None:
                continue
            stored.append(s)
            seen.add((s.agent_id, s.session_id))
        for key, raw in self.archive.items():
            if key in seen:
                dup_rows += 1
                continue
            archived = session_from_item(SessionModel.from_raw_data(raw))
            if archived is not None:
                stored.append(archived)
        by_id = {(s.agent_id, s.session_id): s for s in stored}

        expected = []
        for aid, spans in self.enabled_spans.items():
            cron = self._fire_times(aid)  # cron or rate()
            for lo, hi in spans:
                hi = end if hi is None else min(hi, end)
                t = cron.next_after(datetime.fromtimestamp(float(lo or 0), tz=timezone.utc))
                while t is not None and t.timestamp() <= hi:
                    expected.append((aid, t.timestamp()))
                    t = cron.next_after(t)
        for aid, fires in self.at_fires.items():
            expected.extend((aid, fire) for fire in fires if fire <= end)
        expected.extend(sorted(self.backfilled - set(expected)))
        lost = []
        for aid, fire in expected:
            got = by_id.get((aid, scheduled_session_id(aid, fire)))
            if got is None or (got.status.value == "SKIPPED" and not got.skip_reason):
                lost.append((aid, fire))
        for aid, fire in lost[:10]:
            self.log(f"lost: {self.agent_of[aid].name} fire {datetime.fromtimestamp(fire, tz=timezone.utc)}")

        per_fire = Counter((s.agent_id, s.scheduled_for) for s in stored if s.trigger.value in ("SCHEDULE", "BACKFILL"))
        dup_fires = sum(n - 1 for n in per_fire.values() if n > 1)
        double_ends = [(k, v) for k, v in self.ended_by_call.items() if len(v) > 1]
        for attempt_key, bodies in double_ends[:10]:
            self.log(f"attempt {attempt_key} ended by two different calls: {sorted(bodies)}")
        duplicates = len(self.dup_starts) + dup_fires + dup_rows + len(double_ends) + self.stats["cb_unexpected"]

        stuck = [s for s in stored if s.status.value not in FINAL]
        for s in stuck[:10]:
            self.log(f"stuck: {s.agent_id} {s.session_id} {s.status.value} stage={s.stage} attempt={s.attempt} "
                     f"lease={s.run_lease_until} slot={s.slot}")
        counters = {}
        from chalicelib.adapters.tables import ControlModel
        from chalicelib.domain.admission import slot_limits

        for name, _limit in slot_limits(CAP):
            try:
                counters[name] = int(ControlModel.get(f"SLOTS#{name}", consistent_read=True).used or 0)
            except ControlModel.DoesNotExist:
                counters[name] = 0
        statuses = Counter(s.status.value for s in stored)
        skips = Counter(s.skip_reason for s in stored if s.status.value == "SKIPPED")
        by_kind = Counter(self.agent_of[aid].kind_of_schedule for aid, _ in expected)
        details = {"simulated_minutes": self.minutes, "sessions": len(stored), "statuses": dict(statuses),
                   "fires_by_kind": dict(by_kind), "backfilled_fires": len(self.backfilled),
                   "triggers": dict(Counter(s.trigger.value for s in stored)),
                   "skip_reasons": dict(skips), "counters_at_end": counters, "stats": dict(self.stats),
                   "aws_calls": {f"{k}:{o}": n for (k, o), n in sorted(self.calls.items())}}
        return Result(len(expected), len(lost), duplicates, len(stuck), len(self.cap_violations),
                      len(self.inversions), details)


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, tz=timezone.utc).isoformat().replace("+00:00", "Z")


def _dyn(value: str):
    from moto.dynamodb.models.dynamo_type import DynamoType

    return DynamoType({"S": value})


def run(fires: int = FULL_FIRES, seed: int = 1, log=None) -> Result:
    return Chaos(fires, seed, log=log).run()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m devtools.chaos", description=__doc__.split("\n\n")[0])
    p.add_argument("--fires", type=int, default=None, help="scheduled fires to simulate (about; default 10,000)")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--quick", action="store_true", help="the smoke size (about 400 fires)")
    p.add_argument("-v", "--verbose", action="store_true", help="print what went wrong, and a breakdown")
    args = p.parse_args(argv)
    fires = args.fires or (SMOKE_FIRES if args.quick else FULL_FIRES)
    import logging

    logging.disable(logging.CRITICAL)
    log = (lambda msg: print(msg, file=sys.stderr)) if args.verbose else None
    began = time.monotonic()
    import contextlib
    import io

    with contextlib.redirect_stdout(io.StringIO()):  # metrics (EMF) lines the run path prints
        result = run(fires, args.seed, log=log)
    if args.verbose:
        print(json.dumps(result.details, indent=1, default=str), file=sys.stderr)
        print(f"wall time {time.monotonic() - began:.0f} s", file=sys.stderr)
    print(result.line)
    return 0 if result.ok else 1


if __name__ == "__main__":
    sys.exit(main())
