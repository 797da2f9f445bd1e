"""Dollars per million runs and run starts per second, modelled from the measured run path.

Prices: AWS list prices, us-east-1, on-demand, as stated in ``PRICES`` (so the
figures can be recomputed with others). Limits: DynamoDB's documented
per-partition throughput, ``PARTITION_WCU`` write units and ``PARTITION_RCU``
read units per second for one partition key value (a key never spreads over
partitions).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from bench.capacity import mix_seconds
from bench.runpath import OWN_PHASES, WORKER_PHASES, PathResult

PRICES = {
    "dynamodb_write_per_m": 0.625,  # per million write request units
    "dynamodb_read_per_m": 0.125,  # per million read request units
    "sqs_per_m": 0.40,  # per million requests (each 64 KB chunk of a payload is a request)
    "lambda_request_per_m": 0.20,
    "lambda_gb_s": 0.0000133334,  # arm64
    "scheduler_per_m": 1.00,  # EventBridge Scheduler invocations, after the free tier
}
WORKER_GB = 0.5  # .chalice/config.json lambda_memory_size for the worker and the tick
ESM_REQUESTS_PER_RUN = 2.0  # the event source mapping: one ReceiveMessage and one DeleteMessage per run (batch size 1)
PARTITION_WCU = 1000.0
PARTITION_RCU = 3000.0


@dataclass
class Cost:
    label: str
    lines: list[tuple[str, float, str]]  # (what, dollars per million runs, how)

    @property
    def total(self) -> float:
        return sum(x for _, x, _ in self.lines)


def bookkeeping_seconds(r: PathResult, tick_seconds: float) -> float:
    """Lambda time per run spent on the scheduler's own work: the worker's requests (latencies of
    bench/capacity.py, one after another) and its share of the tick."""
    worker = sum(mix_seconds({op: n / max(1, r.runs) for op, n in r.meter.by_op([p]).items()})
                 for p in WORKER_PHASES)
    return worker + tick_seconds / max(1, r.runs)


def run_cost(r: PathResult, tick_seconds: float) -> Cost:
    runs = max(1, r.runs)
    wcu, rru = r.meter.units(OWN_PHASES)
    sqs_own = sum(v for p, v in r.meter.sqs_chunks.items() if p in OWN_PHASES) / runs
    secs = bookkeeping_seconds(r, tick_seconds)
    gb_s = WORKER_GB * math.ceil(secs * 1000) / 1000  # billed per millisecond
    ticks_per_run = 1 / runs
    return Cost(f"{r.mode}, cap {r.cap:,}", [
        ("DynamoDB writes", wcu / runs * PRICES["dynamodb_write_per_m"], f"{wcu / runs:.1f} WRU per run"),
        ("DynamoDB reads", rru / runs * PRICES["dynamodb_read_per_m"], f"{rru / runs:.1f} RRU per run"),
        ("SQS, our sends", sqs_own * PRICES["sqs_per_m"], f"{sqs_own:.2f} requests per run"),
        ("SQS, event source receive + delete", ESM_REQUESTS_PER_RUN * PRICES["sqs_per_m"],
         f"{ESM_REQUESTS_PER_RUN:g} requests per run (model)"),
        ("Lambda requests", (1 + ticks_per_run) * PRICES["lambda_request_per_m"],
         f"1 worker invocation + {ticks_per_run:.3f} tick per run"),
        ("Lambda GB-s (bookkeeping)", gb_s * 1e6 * PRICES["lambda_gb_s"],
         f"{secs * 1e3:.0f} ms x {WORKER_GB:g} GB per run"),
    ])


def scheduler_cost() -> Cost:
    return Cost("EventBridge Scheduler invoking a Lambda", [
        ("EventBridge Scheduler invocations", PRICES["scheduler_per_m"], "1 per run"),
        ("Lambda requests", PRICES["lambda_request_per_m"], "1 per run"),
    ])


@dataclass
class Limit:
    resource: str
    units_per_start: float  # on the busiest key of the resource
    limit: float  # units per second for that key
    kind: str  # WRU | RRU | fires

    @property
    def starts_per_s(self) -> float:
        return self.limit / self.units_per_start if self.units_per_start else math.inf


def _resource(key: str) -> str:
    table, _, value = key.partition(" ")
    short = table.replace("agent-scheduler-", "")
    if short == "agents":
        return "agents table, one tenant's partition (tenant_id)"
    if short == "sessions":
        return "sessions table, one agent's partition (agent_id)"
    if short == "control":
        return f"control item {value}"
    if short in ("pending-index", "active-index", "due-index"):
        return f"{short} partition {value}"
    return key


def partition_limits(r: PathResult) -> list[Limit]:
    """Per partition key: the units per run start that land on it, and the starts per second its
    limit allows. Keys that are per tenant or per agent are reported for one tenant / agent
    starting every run (the worst case: a single busy tenant)."""
    runs = max(1, r.runs)
    out: dict[str, Limit] = {}
    sources: list[tuple[dict[str, float], float, str]] = [
        (dict(r.meter.wcu_by_key), PARTITION_WCU, "WRU"), (dict(r.meter.rru_by_key), PARTITION_RCU, "RRU")]
    for by_key, limit, kind in sources:
        grouped: dict[str, float] = {}
        for key, u in by_key.items():
            res = _resource(key)
            if res.startswith(("agents table", "sessions table")):
                grouped[res] = grouped.get(res, 0.0) + u  # one tenant / agent with every run
            else:
                grouped[res] = max(grouped.get(res, 0.0), u)
        for res, u in grouped.items():
            lim = Limit(f"{res} ({kind})", u / runs, limit, kind)
            out[lim.resource] = lim
    return sorted(out.values(), key=lambda x: x.starts_per_s)
