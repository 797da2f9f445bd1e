"""Requests, DynamoDB request units and per-partition load, counted from botocore hooks on moto.

``PathMeter`` hooks ``before-call`` and ``after-call`` of every client it is
attached to (pynamodb's clients and the boto3 ones). For each call it records
the operation under the innermost open *phase* of the calling thread, and for
DynamoDB it computes the request units AWS would bill, because moto does not
return ``ConsumedCapacity`` reliably:

- a write costs ceil(size / 1 KB) write units per item, where size is the larger
  of the item before and after the write (read from moto's backend just before
  and just after the call); inside ``TransactWriteItems`` every item (condition
  checks included) costs twice that; a write whose condition fails still costs
  its units;
- a global secondary index whose entry the write adds, removes or changes costs
  ceil(projected size / 1 KB) write units more (a changed index key: a delete
  and a put), not doubled by the transaction;
- a read costs ceil(size / 4 KB) read units per item (GetItem, BatchGetItem) or
  per request over the items returned (Query, Scan), half for an eventually
  consistent read; a COUNT query is billed for the items it counts, taken at the
  mean size of that table's items seen so far.

Units are also summed per partition key (table or index, key value), which is
what DynamoDB's per-partition limits apply to. Conditional failures (a failed
condition on a single write, a transaction cancelled by a condition) are
counted: they are the optimistic retries of the run path.
"""
from __future__ import annotations

import contextlib
import json
import math
import re
import threading
from collections import Counter, defaultdict
from typing import Iterable

from moto.core import DEFAULT_ACCOUNT_ID

REGION = "us-east-1"
WRITE_KB = 1024
READ_KB = 4096
CONDITION_FAILURES = ("ConditionalCheckFailedException", "TransactionCanceledException")


# --- DynamoDB item size (the documented rules, on the wire format) ----------------------------
def value_size(v: dict) -> int:
    (t, x), = v.items()
    if t == "S":
        return len(x.encode())
    if t == "N":
        digits = x.lstrip("-").replace(".", "").lstrip("0") or "0"
        return math.ceil(len(digits) / 2) + 1
    if t == "B":
        return len(x) if isinstance(x, (bytes, bytearray)) else math.ceil(len(x) * 3 / 4)
    if t in ("BOOL", "NULL"):
        return 1
    if t == "SS":
        return sum(len(s.encode()) for s in x)
    if t == "NS":
        return sum(value_size({"N": n}) for n in x)
    if t == "L":
        return 3 + sum(1 + value_size(e) for e in x)
    if t == "M":
        return 3 + sum(1 + len(k.encode()) + value_size(e) for k, e in x.items())
    return 1


def item_size(attrs: dict | None) -> int:
    if not attrs:
        return 0
    return sum(len(k.encode()) + value_size(v) for k, v in attrs.items())


def _backend():
    from moto.dynamodb.models import dynamodb_backends

    return dynamodb_backends[DEFAULT_ACCOUNT_ID][REGION]


class _TableInfo:
    def __init__(self, table) -> None:
        self.name = table.name
        self.hash = table.hash_key_attr
        self.range = table.range_key_attr
        self.indexes = []  # (name, hash attr, range attr, projection type, included attrs)
        for ix in table.global_indexes:
            h = next((s["AttributeName"] for s in ix.schema if s["KeyType"] == "HASH"), None)
            r = next((s["AttributeName"] for s in ix.schema if s["KeyType"] == "RANGE"), None)
            proj = ix.projection or {}
            self.indexes.append((ix.name, h, r, proj.get("ProjectionType", "ALL"),
                                 tuple(proj.get("NonKeyAttributes", ()))))
        self.table = table

    def key_of(self, attrs: dict) -> dict:
        k = {self.hash: attrs[self.hash]}
        if self.range:
            k[self.range] = attrs[self.range]
        return k

    def image(self, key: dict) -> dict | None:
        """The stored item (wire format), or None."""
        from moto.dynamodb.models.dynamo_type import DynamoType

        try:
            h = DynamoType(key[self.hash])
            r = DynamoType(key[self.range]) if self.range else None
            item = self.table.get_item(h, r)
        except Exception:  # noqa: BLE001 - a key moto cannot read is an item that is not there
            return None
        return None if item is None else item.to_json()["Attributes"]

    def projected(self, attrs: dict, ix) -> dict:
        name, h, r, ptype, include = ix
        if ptype == "ALL":
            return attrs
        keep = {self.hash, h} | ({self.range} if self.range else set()) | ({r} if r else set())
        if ptype == "INCLUDE":
            keep |= set(include)
        return {k: v for k, v in attrs.items() if k in keep}


def _pk(v: dict | None) -> str:
    if v is None:
        return "?"
    (_, x), = v.items()
    return str(x)


class PathMeter:
    """Requests per (phase, operation), request units per phase and per partition key."""

    def __init__(self) -> None:
        self.requests: Counter = Counter()  # (phase, op) -> API calls
        self.wcu: Counter = Counter()  # phase -> write units (base tables and indexes)
        self.rru: dict[str, float] = defaultdict(float)  # phase -> read units
        self.wcu_by_key: Counter = Counter()  # "table|index pk" -> write units
        self.rru_by_key: dict[str, float] = defaultdict(float)
        self.failures: Counter = Counter()  # (phase, op) -> conditional failures
        self.sqs_chunks: Counter = Counter()  # phase -> SQS billed requests (64 KB chunks)
        self._local = threading.local()
        self._lock = threading.RLock()
        self._hooked: list = []
        self._tables: dict[str, _TableInfo] = {}
        self._mean: dict[str, tuple[int, int]] = {}  # table -> (items seen, bytes)
        self.enabled = True
        self.measure_units = True  # False: requests and conditional failures only (no moto reads)
        self.overrides: list = []  # (predicate(service, op, body) -> phase or None)

    # --- phases (per thread) ---------------------------------------------------------
    def _stack(self) -> list[str]:
        st = getattr(self._local, "stack", None)
        if st is None:
            st = self._local.stack = ["other"]
        return st

    @contextlib.contextmanager
    def phase(self, name: str):
        st = self._stack()
        st.append(name)
        try:
            yield
        finally:
            st.pop()

    def wrap(self, obj, attr: str, phase: str, unless: tuple[str, ...] = ()):
        """Attribute the requests made inside ``obj.attr(...)`` to ``phase`` (not when called inside one of
        the phases ``unless``); returns an undo."""
        fn = getattr(obj, attr)
        in_dict = isinstance(obj, type) or attr in getattr(obj, "__dict__", {})
        meter = self

        def wrapped(*a, **k):
            if meter._stack()[-1] in unless:
                return fn(*a, **k)
            with meter.phase(phase):
                return fn(*a, **k)

        setattr(obj, attr, wrapped)

        def undo():
            if in_dict:
                setattr(obj, attr, fn)
            else:
                delattr(obj, attr)

        return undo

    # --- hooks ------------------------------------------------------------------------
    _HOOKS = (("before-call", "_before"), ("after-call", "_after"))

    def attach(self, clients: Iterable) -> "PathMeter":
        for client in clients:
            if any(client is c for c in self._hooked):
                continue
            for event, method in self._HOOKS:
                client.meta.events.register(event, getattr(self, method), unique_id=f"meter-{method}-{id(self)}")
            self._hooked.append(client)
        return self

    def detach(self) -> None:
        for client in self._hooked:
            for event, method in self._HOOKS:
                client.meta.events.unregister(event, unique_id=f"meter-{method}-{id(self)}")
        self._hooked = []

    def _info(self, table: str) -> _TableInfo | None:
        if table not in self._tables:
            try:
                self._tables[table] = _TableInfo(_backend().get_table(table))
            except Exception:  # noqa: BLE001
                return None
        return self._tables[table]

    def _phase_for(self, service: str, op: str, body: dict) -> str:
        for pred in self.overrides:
            p = pred(service, op, body)
            if p:
                return p
        return self._stack()[-1]

    def _before(self, model=None, params=None, event_name: str = "", **_):
        if not self.enabled or model is None:
            return None
        service = event_name.split(".")[1] if "." in event_name else ""
        op = model.name
        body: dict = {}
        raw = (params or {}).get("body")
        if service == "dynamodb" and raw:
            try:
                body = json.loads(raw)
            except (TypeError, ValueError):
                body = {}
        phase = self._phase_for(service, op, body)
        state = {"phase": phase, "op": op, "service": service, "body": body, "writes": []}
        if service == "dynamodb" and self.measure_units:
            with self._lock:
                state["writes"] = [(tx, info, key, info.image(key)) for tx, info, key in self._written(op, body)]
        elif service == "sqs" and raw:
            size = len(raw) if isinstance(raw, (bytes, bytearray)) else len(str(raw))
            self.sqs_chunks[phase] += max(1, math.ceil(size / 65536))
        self._local.pending = state
        with self._lock:
            self.requests[(phase, op)] += 1
        return None

    def _written(self, op: str, body: dict):
        """(transactional, table info, key) for every item a write request touches."""
        out = []
        if op in ("PutItem", "UpdateItem", "DeleteItem"):
            info = self._info(body.get("TableName", ""))
            if info is not None:
                key = body.get("Key") or info.key_of(body.get("Item", {}))
                out.append((False, info, key))
        elif op == "TransactWriteItems":
            for entry in body.get("TransactItems", []):
                (_kind, x), = entry.items()
                info = self._info(x.get("TableName", ""))
                if info is not None:
                    out.append((True, info, x.get("Key") or info.key_of(x.get("Item", {}))))
        return out

    def _after(self, http_response=None, parsed=None, model=None, **_):
        state = getattr(self._local, "pending", None)
        self._local.pending = None
        if not self.enabled or state is None or model is None or state["op"] != model.name:
            return None
        phase, op = state["phase"], state["op"]
        parsed = parsed or {}
        code = (parsed.get("Error") or {}).get("Code")
        with self._lock:
            if code in CONDITION_FAILURES:
                self.failures[(phase, op)] += 1
            if state["service"] != "dynamodb" or not self.measure_units:
                return None
            for tx, info, key, before in state["writes"]:
                after = info.image(key)
                self._charge_write(phase, info, key, before, after, tx)
            self._charge_read(phase, op, state["body"], parsed)
        return None

    def _charge_write(self, phase: str, info: _TableInfo, key: dict, before, after, tx: bool) -> None:
        size = max(item_size(before), item_size(after))
        units = max(1, math.ceil(size / WRITE_KB)) * (2 if tx else 1)
        self.wcu[phase] += units
        self.wcu_by_key[f"{info.name} {_pk(key.get(info.hash))}"] += units
        for a in (before, after):
            if a:
                n, b = self._mean.get(info.name, (0, 0))
                self._mean[info.name] = (n + 1, b + item_size(a))
        for ix in info.indexes:
            name, h, r = ix[0], ix[1], ix[2]

            def entry(img, h=h, r=r, ix=ix):
                if not img or h not in img or (r and r not in img):
                    return None
                return (_pk(img[h]), json.dumps(img.get(r), sort_keys=True)), info.projected(img, ix)

            eb, ea = entry(before), entry(after)
            charges = []
            if eb and not ea:
                charges.append((eb[0][0], eb[1]))
            elif ea and not eb:
                charges.append((ea[0][0], ea[1]))
            elif eb and ea:
                if eb[0] != ea[0]:
                    charges += [(eb[0][0], eb[1]), (ea[0][0], ea[1])]
                elif eb[1] != ea[1]:
                    charges.append((ea[0][0], ea[1] if item_size(ea[1]) >= item_size(eb[1]) else eb[1]))
            for pk, img in charges:
                u = max(1, math.ceil(item_size(img) / WRITE_KB))
                self.wcu[phase] += u
                self.wcu_by_key[f"{name} {pk}"] += u

    def _mean_size(self, table: str) -> float:
        n, b = self._mean.get(table, (0, 0))
        return b / n if n else 1000.0

    def _charge_read(self, phase: str, op: str, body: dict, parsed: dict) -> None:
        factor = 1.0 if body.get("ConsistentRead") else 0.5
        table = body.get("TableName", "")
        if op == "GetItem":
            info = self._info(table)
            size = item_size(parsed.get("Item"))
            u = max(1, math.ceil(size / READ_KB)) * factor
            self.rru[phase] += u
            if info is not None:
                self.rru_by_key[f"{table} {_pk(body.get('Key', {}).get(info.hash))}"] += u
        elif op == "BatchGetItem":
            for t, items in (parsed.get("Responses") or {}).items():
                info = self._info(t)
                f = 1.0 if (body.get("RequestItems", {}).get(t, {}).get("ConsistentRead")) else 0.5
                for it in items:
                    u = max(1, math.ceil(item_size(it) / READ_KB)) * f
                    self.rru[phase] += u
                    if info is not None:
                        self.rru_by_key[f"{t} {_pk(it.get(info.hash))}"] += u
        elif op in ("Query", "Scan"):
            items = parsed.get("Items")
            if items is None:  # Select=COUNT
                size = parsed.get("ScannedCount", parsed.get("Count", 0)) * self._mean_size(table)
            else:
                size = sum(item_size(it) for it in items)
            u = max(1, math.ceil(size / READ_KB)) * factor
            self.rru[phase] += u
            self.rru_by_key[self._query_key(op, body)] += u

    def _query_key(self, op: str, body: dict) -> str:
        table = body.get("TableName", "")
        name = body.get("IndexName") or table
        if op == "Scan":
            return f"{name} (scan)"
        info = self._info(table)
        want = None
        if info is not None:
            want = info.hash
            for ix in info.indexes:
                if ix[0] == body.get("IndexName"):
                    want = ix[1]
        names = body.get("ExpressionAttributeNames", {})
        values = body.get("ExpressionAttributeValues", {})
        for n, v in re.findall(r"(#\w+)\s*=\s*(:\w+)", body.get("KeyConditionExpression", "")):
            if names.get(n) == want:
                return f"{name} {_pk(values.get(v))}"
        return f"{name} ?"

    # --- views --------------------------------------------------------------------------
    def by_op(self, phases: Iterable[str] | None = None) -> Counter:
        want = None if phases is None else set(phases)
        out: Counter = Counter()
        for (p, op), n in self.requests.items():
            if want is None or p in want:
                out[op] += n
        return out

    def total(self, phases: Iterable[str] | None = None) -> int:
        return sum(self.by_op(phases).values())

    def units(self, phases: Iterable[str] | None = None) -> tuple[float, float]:
        want = None if phases is None else set(phases)
        w = sum(v for p, v in self.wcu.items() if want is None or p in want)
        r = sum(v for p, v in self.rru.items() if want is None or p in want)
        return w, r

    def conditional_failures(self) -> int:
        return sum(self.failures.values())

    def reset(self) -> None:
        for c in (self.requests, self.wcu, self.rru, self.wcu_by_key, self.rru_by_key, self.failures,
                  self.sqs_chunks):
            c.clear()


def all_clients(container) -> list:
    """pynamodb's clients and the container's boto3 clients the run path uses."""
    from bench.counting import pynamodb_clients

    return pynamodb_clients() + [container.client(s) for s in ("sqs", "sns", "apigatewaymanagementapi")]


def hot_keys(by_key: Counter, runs: int, limit: float, top: int = 8) -> list[tuple[str, float, float]]:
    """(partition key, units per run on it, runs per second it allows at ``limit`` units/s)."""
    rows = []
    for key, u in by_key.most_common(top):
        per = u / max(1, runs)
        rows.append((key, per, limit / per if per else math.inf))
    return rows


def group_keys(by_key: Counter) -> dict[str, Counter]:
    """Keys grouped by table/index ("sessions p000" -> group "sessions")."""
    out: dict[str, Counter] = defaultdict(Counter)
    for key, u in by_key.items():
        out[key.split(" ", 1)[0]][key] += u
    return out
