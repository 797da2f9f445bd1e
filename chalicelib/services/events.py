"""Deliver events to a tenant's subscribed WebSocket connections.

Publishing never fails a run: errors are logged and counted, gone connections
are deleted.
"""
from __future__ import annotations

import logging
import threading
import time

from chalicelib.domain import events as ev

log = logging.getLogger("agent_scheduler.events")
run_log = logging.getLogger("agent_scheduler.runs")

CACHE_SECONDS = 2.0


def wants(subscriptions, agent_id: str | None) -> bool:
    subs = set(subscriptions or ())
    return "*" in subs or (agent_id is not None and agent_id in subs)


class EventPublisher:
    def __init__(self, container) -> None:
        self.c = container
        self._cache: dict[str, tuple[float, list]] = {}
        self._lock = threading.Lock()
        self.sent = 0
        self.failures = 0

    def invalidate(self, tenant_id: str | None = None) -> None:
        with self._lock:
            if tenant_id is None:
                self._cache.clear()
            else:
                self._cache.pop(tenant_id, None)

    def _connections(self, tenant_id: str) -> list:
        now = time.monotonic()
        with self._lock:
            hit = self._cache.get(tenant_id)
            if hit and now - hit[0] < CACHE_SECONDS:
                return hit[1]
        conns = self.c.connections.of_tenant(tenant_id)
        with self._lock:
            self._cache[tenant_id] = (now, conns)
        return conns

    def publish(self, tenant_id: str, agent_id: str | None, payload: dict) -> int:
        if payload.get("event") in ev.AGENT_EVENTS:
            data = payload["data"]
            run_log.info(
                "%s agent=%s session=%s attempt=%s%s",
                payload["event"],
                data.get("agentId"),
                data.get("sessionId"),
                data.get("attempt"),
                _suffix(data),
            )
        if not self.c.settings.ws_endpoint:
            return 0
        try:
            targets = [cid for cid, subs in self._connections(tenant_id) if wants(subs, agent_id)]
            if not targets:
                return 0
            gone = self.c.pusher.push(targets, payload)
            for cid in gone:
                self.c.connections.remove(cid)
            if gone:
                self.invalidate(tenant_id)
            self.sent += len(targets) - len(gone)
            return len(targets) - len(gone)
        except Exception:  # never let an event fail a run
            self.failures += 1
            log.exception("event delivery failed", extra={"tenant_id": tenant_id, "agent_id": agent_id})
            return 0

    def publish_status(self, status_for) -> None:
        """``scheduler:status`` to every connection, each with its own tenant's counts."""
        if not self.c.settings.ws_endpoint:
            return
        try:
            by_tenant: dict[str, list[str]] = {}
            for cid, tenant in self.c.connections.all_connections():
                by_tenant.setdefault(tenant, []).append(cid)
            now = self.c.clock.now().timestamp()
            for tenant, cids in by_tenant.items():
                payload = ev.scheduler_status(status_for(tenant), now)
                for cid in self.c.pusher.push(cids, payload):
                    self.c.connections.remove(cid)
        except Exception:
            self.failures += 1
            log.exception("status delivery failed")


def _suffix(data: dict) -> str:
    parts = []
    if "progress" in data:
        parts.append(f" progress={data['progress']}")
    if data.get("error"):
        parts.append(f" error={data['error'].get('category')}: {data['error'].get('message')}")
    if "willRetry" in data:
        parts.append(f" willRetry={data['willRetry']}")
    if data.get("durationMs") is not None:
        parts.append(f" durationMs={data['durationMs']}")
    return "".join(parts)
