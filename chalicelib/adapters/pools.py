"""Pools and keyed counters in the control table.

- ``POOL#<tenant>#<name>``: a pool's limits (``max_concurrency``, ``throttle``) and its
  shared back-off (``blocked_until``: a provider's Retry-After).
- ``POOLS#<tenant>``: the tenant's pool names (a string set), so listing is one read.
- ``LIM#...``: keyed counters (``used``), changed only by conditional ADD in the run
  path's transactions (see ``runstore``); throttle windows carry a TTL.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Sequence

from chalicelib.adapters.errors import aws_call
from chalicelib.adapters.tables import ControlModel
from chalicelib.adapters.transact import Tx, request_token
from chalicelib.domain.admission import PoolLimit, Throttle, pool_key
from chalicelib.errors import ConditionFailed

POOL = "POOL#"
POOLS = "POOLS#"
BATCH = 100


@dataclass(frozen=True)
class Pool:
    tenant_id: str
    name: str
    max_concurrency: int | None
    throttle: dict[str, int] | None
    blocked_until: float | None
    created_at: float
    updated_at: float

    def limit(self) -> PoolLimit:
        t = self.throttle
        return PoolLimit(self.name, self.max_concurrency,
                         Throttle(int(t["limit"]), int(t["periodSeconds"])) if t else None, self.blocked_until)


def pool_item_key(tenant_id: str, name: str) -> str:
    return f"{POOL}{tenant_id}#{name}"


def _pool(tenant_id: str, name: str, m: ControlModel) -> Pool:
    return Pool(
        tenant_id, name,
        None if m.max_concurrency is None else int(m.max_concurrency),
        {k: int(v) for k, v in m.throttle.items()} if m.throttle else None,
        None if m.blocked_until is None else float(m.blocked_until),
        float(m.created_at or 0), float(m.updated_at or 0),
    )


class PoolStore:
    def put(self, tenant_id: str, name: str, max_concurrency: int | None, throttle: dict | None, now: float) -> Pool:
        """Create or replace a pool's limits (its back-off window and counters stay), and list it."""
        c = ControlModel
        tx = Tx(request_token("pool", tenant_id, name, max_concurrency, str(throttle), now))
        tx.update("pool", c(pool_item_key(tenant_id, name)), [
            c.max_concurrency.set(max_concurrency) if max_concurrency is not None else c.max_concurrency.remove(),
            c.throttle.set(throttle) if throttle else c.throttle.remove(),
            c.created_at.set(c.created_at | now), c.updated_at.set(now),
        ])
        tx.update("list", c(POOLS + tenant_id), [c.names.add({name})])
        res = tx.commit("put pool")
        if not res.ok:  # no conditions: only a concurrent write of the same items cancels it
            raise ConditionFailed("the pool changed meanwhile; try again")
        got = self.get(tenant_id, name)
        assert got is not None
        return got

    def get(self, tenant_id: str, name: str) -> Pool | None:
        with aws_call("get pool"):
            try:
                return _pool(tenant_id, name, ControlModel.get(pool_item_key(tenant_id, name), consistent_read=True))
            except ControlModel.DoesNotExist:
                return None

    def names(self, tenant_id: str) -> list[str]:
        with aws_call("list pools"):
            try:
                return sorted(ControlModel.get(POOLS + tenant_id, consistent_read=True).names or ())
            except ControlModel.DoesNotExist:
                return []

    def get_many(self, tenant_id: str, names: Iterable[str]) -> dict[str, Pool]:
        wanted = sorted(set(names))
        out: dict[str, Pool] = {}
        for i in range(0, len(wanted), BATCH):
            keys = {pool_item_key(tenant_id, n): n for n in wanted[i:i + BATCH]}
            with aws_call("get pools"):
                for m in ControlModel.batch_get(list(keys)):
                    out[keys[m.pk]] = _pool(tenant_id, keys[m.pk], m)
        return out

    def limits(self, pools: Sequence[tuple[str, str]]) -> dict[tuple[str, str], PoolLimit]:
        """(tenant, name) -> the pool's limits, for admission; an absent pool is left out."""
        keys = {pool_item_key(t, n): (t, n) for t, n in set(pools)}
        out: dict[tuple[str, str], PoolLimit] = {}
        items = sorted(keys)
        for i in range(0, len(items), BATCH):
            with aws_call("get pools"):
                for m in ControlModel.batch_get(items[i:i + BATCH]):
                    t, n = keys[m.pk]
                    out[(t, n)] = _pool(t, n, m).limit()
        return out

    def read(self, pools: Iterable[tuple[str, str]], keys: Iterable[str]) -> tuple[dict[tuple[str, str], PoolLimit], dict[str, int]]:
        """Pools' limits and counters together (BatchGetItem, 100 keys each): what admission needs."""
        named = {pool_item_key(t, n): (t, n) for t, n in set(pools)}
        wanted = sorted(set(named) | set(keys))
        limits: dict[tuple[str, str], PoolLimit] = {}
        counters: dict[str, int] = {}
        for i in range(0, len(wanted), BATCH):
            with aws_call("read pools and keyed counters"):
                for m in ControlModel.batch_get(wanted[i:i + BATCH]):
                    if m.pk in named:
                        t, n = named[m.pk]
                        limits[(t, n)] = _pool(t, n, m).limit()
                    else:
                        counters[m.pk] = int(m.used or 0)
        return limits, counters

    def delete(self, tenant_id: str, name: str) -> bool:
        c = ControlModel
        tx = Tx(request_token("pool-delete", tenant_id, name))
        tx.delete("pool", c(pool_item_key(tenant_id, name)), c.pk.exists())
        tx.update("list", c(POOLS + tenant_id), [c.names.delete({name})])
        return tx.commit("delete pool").ok

    def block(self, tenant_id: str, name: str, until: float) -> bool:
        """A provider's rate limit seen by a run of the pool: no run of the pool starts before
        ``until``. Only moves the window later; False when the pool is gone or already blocked longer."""
        c = ControlModel
        try:
            with aws_call("block pool"):
                c(pool_item_key(tenant_id, name)).update(
                    actions=[c.blocked_until.set(until)],
                    condition=c.pk.exists() & (c.blocked_until.does_not_exist() | (c.blocked_until < until)),
                )
            return True
        except ConditionFailed:
            return False

    # --- the reconciler's view of the keyed concurrency counters --------------------------
    def concurrency_counters(self) -> dict[str, tuple[int, tuple[int, int] | None]]:
        """Every keyed concurrency counter (not the throttle windows, which carry a TTL):
        key -> (used, the audit pair the reconciler last noted). The control table holds only
        small items (counters, pools, state), so this Scan reads little."""
        c = ControlModel
        out: dict[str, tuple[int, tuple[int, int] | None]] = {}
        with aws_call("scan keyed counters"):
            for m in c.scan(c.pk.startswith("LIM#") & c.expires_at.does_not_exist()):
                audit = (int(m.audit[0]), int(m.audit[1])) if m.audit else None
                out[m.pk] = (int(m.used or 0), audit)
        return out

    def note_audit(self, key: str, seen: list[int] | None) -> None:
        c = ControlModel
        with aws_call("note counter audit"):
            c(key).update(actions=[c.audit.set(seen) if seen else c.audit.remove()])

    def repair(self, key: str, expect_used: int, holders: int) -> bool:
        """Set a keyed counter to the number of runs holding it, if it did not move meanwhile."""
        c = ControlModel
        try:
            with aws_call("repair keyed counter"):
                c(key).update(actions=[c.used.set(holders), c.audit.remove()], condition=c.used == expect_used)
            return True
        except ConditionFailed:
            return False

    def running(self, tenant_id: str, name: str) -> int:
        return self.counters([pool_key(tenant_id, name)]).get(pool_key(tenant_id, name), 0)

    def counters(self, keys: Iterable[str]) -> dict[str, int]:
        """The value of each keyed counter (one BatchGetItem per 100); a counter never written is 0."""
        wanted = sorted(set(keys))
        out: dict[str, int] = {}
        for i in range(0, len(wanted), BATCH):
            with aws_call("read keyed counters"):
                for m in ControlModel.batch_get(wanted[i:i + BATCH]):
                    out[m.pk] = int(m.used or 0)
        return out
