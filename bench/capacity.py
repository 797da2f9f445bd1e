"""Figure 3: how many due fires one tick can handle inside 60 s.

A model, not a measurement: measured CPU per fire (figure 2) plus measured
requests per fire (figure 1) times assumed service latencies. The latencies
are typical same-region round trips (p50) for small requests, stated here so
the figures can be recomputed with others.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

# Assumed latency per request, milliseconds (same region, small items, p50).
LATENCY_MS: dict[str, float] = {
    "GetItem": 5.0,
    "PutItem": 8.0,
    "UpdateItem": 8.0,
    "DeleteItem": 8.0,
    "Query": 10.0,  # one page (up to 1 MB)
    "Scan": 10.0,  # one page (up to 1 MB)
    "BatchGetItem": 10.0,
    "BatchWriteItem": 15.0,
    "TransactWriteItems": 25.0,
    "SendMessage": 20.0,
    "SendMessageBatch": 20.0,
    "Publish": 20.0,
}
DEFAULT_MS = 10.0
PAGE_BYTES = 1_000_000  # DynamoDB returns at most 1 MB per Query/Scan page
TICK_BUDGET_S = 60.0
TRANSACTION_ITEMS = 100
SQS_BATCH = 10


def latency_s(op: str) -> float:
    return LATENCY_MS.get(op, DEFAULT_MS) / 1000.0


def mix_seconds(ops: dict[str, float]) -> float:
    """Sequential latency of a request mix {op: count}."""
    return sum(n * latency_s(op) for op, n in ops.items())


@dataclass(frozen=True)
class TickModel:
    """Wall time of one tick over ``n`` due fires, as the tick runs them (sequentially)."""

    cpu_per_fire_s: float
    item_bytes: float  # bytes of one due schedule in a Query page
    shards: int  # due-index shards
    cap: int = 1000  # at most this many runs are admitted (and sent) per tick
    slot_shards: int = 10  # slot counters: one per 100 slots of the cap
    pending_shards: int = 1
    tx_items_per_fire: float = 2.0  # schedule advance + new session

    def pages(self, n: int) -> int:
        return max(self.shards, math.ceil(n * self.item_bytes / PAGE_BYTES))

    def seconds(self, n: int, *, query_parallel: int = 1, io_parallel: int = 1, fanout: int = 1) -> float:
        """``query_parallel``: shard queries at once; ``io_parallel``: writes/sends at once;
        ``fanout``: independent ticks, one per group of shards (CPU divides too)."""
        n_each = math.ceil(n / fanout)
        shards = max(1, self.shards // fanout)
        pages = max(shards, math.ceil(n_each * self.item_bytes / PAGE_BYTES))
        admitted = min(n_each, math.ceil(self.cap / fanout))
        # fixed: state, last tick, slot counters (admission, reconciler), pending shard(s), and per slot
        # shard the recovery sweep's and the reconciler's queries
        reads = latency_s("GetItem") + latency_s("UpdateItem") + 2 * latency_s("BatchGetItem")
        reads += math.ceil(self.pending_shards / query_parallel) * latency_s("Query")
        reads += 2 * math.ceil(self.slot_shards / query_parallel) * latency_s("Query")
        if n_each > admitted:  # runs left waiting: the hint is set on each counter
            reads += math.ceil(self.slot_shards / io_parallel) * latency_s("UpdateItem")
        reads += math.ceil(pages / query_parallel) * latency_s("Query")  # due index
        tx = math.ceil(n_each * self.tx_items_per_fire / TRANSACTION_ITEMS) + math.ceil(admitted / (TRANSACTION_ITEMS - 1))
        batches = math.ceil(admitted / SQS_BATCH)
        writes = (tx * latency_s("TransactWriteItems") + batches * latency_s("SendMessageBatch")) / io_parallel
        return reads + writes + n_each * self.cpu_per_fire_s

    def capacity(self, **kw) -> int:
        """Largest n with seconds(n) <= 60 s (binary search)."""
        lo, hi = 0, 1
        while self.seconds(hi, **kw) <= TICK_BUDGET_S and hi < 10**9:
            lo, hi = hi, hi * 2
        while hi - lo > 1:
            mid = (lo + hi) // 2
            if self.seconds(mid, **kw) <= TICK_BUDGET_S:
                lo = mid
            else:
                hi = mid
        return lo


@dataclass(frozen=True)
class BaselineModel:
    """The baseline tick: scan the whole table, then UpdateItem + SendMessage per due item."""

    cpu_per_fire_s: float
    item_bytes: float
    table_items: int

    def seconds(self, n: int, *, io_parallel: int = 1) -> float:
        pages = max(1, math.ceil(max(self.table_items, n) * self.item_bytes / PAGE_BYTES))
        per = (latency_s("UpdateItem") + latency_s("SendMessage")) / io_parallel
        return pages * latency_s("Scan") + n * (per + self.cpu_per_fire_s)

    def capacity(self, **kw) -> int:
        lo, hi = 0, 1
        while self.seconds(hi, **kw) <= TICK_BUDGET_S and hi < 10**9:
            lo, hi = hi, hi * 2
        while hi - lo > 1:
            mid = (lo + hi) // 2
            if self.seconds(mid, **kw) <= TICK_BUDGET_S:
                lo = mid
            else:
                hi = mid
        return lo


def capacity_rows(model: TickModel, base: BaselineModel, shards: int) -> list[tuple[str, int, int]]:
    """(variant, project capacity, baseline capacity)."""
    return [
        ("as implemented (one Lambda, requests one after another)", model.capacity(), base.capacity()),
        (f"+ the {shards} shard queries in parallel", model.capacity(query_parallel=shards), base.capacity()),
        (f"+ writes and sends {shards} at a time (threads; CPU still one core)",
         model.capacity(query_parallel=shards, io_parallel=shards), base.capacity(io_parallel=shards)),
        (f"one tick per shard ({shards} Lambdas in parallel)", model.capacity(fanout=shards), base.capacity()),
    ]
