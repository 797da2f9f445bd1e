"""Pools: limits shared by the agents that name them (one provider key, one GPU box, one API).

A pool is per tenant; its counters are keyed counters like an agent's own limits (see
``domain.admission``). A pool that an agent names cannot be deleted.
"""
from __future__ import annotations

import re

from chalicelib.api import schemas
from chalicelib.api.serialize import iso
from chalicelib.api.validation import validate
from chalicelib.errors import Conflict, NotFound, ValidationError

POOL_NAME = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
MAX_POOLS_PER_AGENT = 4


def check_pool_name(name, field: str = "name") -> str:
    if not isinstance(name, str) or not POOL_NAME.match(name):
        raise ValidationError(field, f"{field} must be 1..64 characters of A-Z, a-z, 0-9, '.', '_' and '-'")
    return name


class PoolService:
    def __init__(self, container) -> None:
        self.c = container

    def now(self) -> float:
        return self.c.clock.now().timestamp()

    def view(self, pool, running: int) -> dict:
        return {
            "name": pool.name,
            "maxConcurrency": pool.max_concurrency,
            "throttle": pool.throttle,
            "running": running,
            "blockedUntil": iso(pool.blocked_until) if pool.blocked_until and pool.blocked_until > self.now() else None,
            "createdAt": iso(pool.created_at),
            "updatedAt": iso(pool.updated_at),
        }

    def put(self, tenant_id: str, name: str, body: dict) -> dict:
        check_pool_name(name)
        body = validate(body if body is not None else {}, schemas.POOL_PUT)
        pool = self.c.pools.put(tenant_id, name, body.get("maxConcurrency"), body.get("throttle"), self.now())
        return self.view(pool, self.c.pools.running(tenant_id, name))

    def get(self, tenant_id: str, name: str) -> dict:
        check_pool_name(name)
        pool = self.c.pools.get(tenant_id, name)
        if pool is None:
            raise NotFound(f"pool {name!r} not found")
        return self.view(pool, self.c.pools.running(tenant_id, name))

    def list(self, tenant_id: str) -> dict:
        from chalicelib.domain.admission import pool_key

        pools = self.c.pools.get_many(tenant_id, self.c.pools.names(tenant_id))
        running = self.c.pools.counters([pool_key(tenant_id, n) for n in pools])
        return {"items": [self.view(p, running.get(pool_key(tenant_id, n), 0)) for n, p in sorted(pools.items())],
                "nextToken": None}

    def delete(self, tenant_id: str, name: str) -> None:
        check_pool_name(name)
        if self.c.pools.get(tenant_id, name) is None:
            raise NotFound(f"pool {name!r} not found")
        users = [a.agent_id for a in self.c.agents.iter_tenant(tenant_id) if name in a.pools]
        if users:
            raise Conflict(f"pool {name!r} is named by {len(users)} agent(s): {', '.join(users[:10])}")
        if not self.c.pools.delete(tenant_id, name):
            raise NotFound(f"pool {name!r} not found")

    def check_agent_pools(self, tenant_id: str, names) -> tuple[str, ...]:
        """An agent's ``pools``: at most 4 distinct names of the tenant's pools (else a 400 naming ``pools``)."""
        if names is None:
            return ()
        for n in names:
            check_pool_name(n, "pools")
        if len(set(names)) != len(names):
            raise ValidationError("pools", "pools must not name a pool twice")
        if len(names) > MAX_POOLS_PER_AGENT:
            raise ValidationError("pools", f"pools must have at most {MAX_POOLS_PER_AGENT} items")
        known = self.c.pools.get_many(tenant_id, names)
        unknown = [n for n in names if n not in known]
        if unknown:
            raise ValidationError("pools", f"pools: no pool named {', '.join(repr(n) for n in unknown)}")
        return tuple(names)

    def block(self, tenant_id: str, names, until: float) -> int:
        """A provider's rate limit seen by a run of an agent in ``names``: no run of those pools
        starts before ``until``. Returns how many pools it moved."""
        return sum(1 for n in names if self.c.pools.block(tenant_id, n, until))
