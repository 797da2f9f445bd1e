"""The tenant's event stream: number, keep and deliver events; replay them on resume.

Every event gets ``seq`` (strictly increasing per tenant) and ``id``, is stored once
(``EventStore``, kept ``SCHEDULER_EVENT_RETENTION_HOURS``) and is pushed to the
connections that follow it, each on its own (a gone or slow one never delays the
others). Publishing never fails a run: errors are logged and counted.

Resume without gap or duplicate (``subscribe`` with ``since``): the connection is put
on *hold* in the stream head (live events skip it), the retained events after
``since`` are replayed in order, then the connection goes live at the last replayed
seq, in one conditional write that succeeds only if no event was numbered meanwhile
(else the new ones are replayed first). A publisher learns who gets an event in the
same atomic write that numbers it, so each event reaches the connection exactly
once: by replay if numbered before it went live, live after.
"""
from __future__ import annotations

import logging
import time
import uuid
from typing import Callable, Iterable

from chalicelib.domain import events as ev

log = logging.getLogger("agent_scheduler.events")
run_log = logging.getLogger("agent_scheduler.runs")

REPLAY_LIMIT = 1000  # events one resume replays; more: a resync to the first one replayed
REPLAY_ROUNDS = 5  # tries to go live with no event numbered meanwhile
HOLE_WAITS = 10  # re-reads of a seq that was numbered but is not stored yet (its publisher is mid-write)
HOLE_WAIT_SECONDS = 0.05
PAGE_MAX = 500


def wants(subscriptions, agent_id: str | None) -> bool:
    subs = set(subscriptions or ())
    return "*" in subs or (agent_id is not None and agent_id in subs)


def _matches(event: dict, subs: set[str]) -> bool:
    agent_id = (event.get("data") or {}).get("agentId")
    return agent_id is None or "*" in subs or agent_id in subs


class EventPublisher:
    def __init__(self, container, *, sleep: Callable[[float], None] = time.sleep) -> None:
        self.c = container
        self.sent = 0
        self.failures = 0
        self._sleep = sleep

    @property
    def store(self):
        return self.c.event_store

    @property
    def _live(self) -> bool:
        return bool(self.c.settings.ws_endpoint)

    # --- publishing ----------------------------------------------------------------------
    def _number(self, tenant_id: str, payloads: list[dict]):
        """Take consecutive seqs for ``payloads`` (one atomic write), stamp and store them."""
        head = self.store.allocate(tenant_id, len(payloads))
        first = head.last_seq - len(payloads) + 1
        for i, payload in enumerate(payloads):
            payload["seq"] = first + i
            payload["id"] = str(uuid.uuid4())
        try:
            self.store.put(tenant_id, payloads, self.c.clock.now().timestamp())
        except Exception:  # still deliver live; only a later replay will miss them
            self.failures += 1
            log.exception("storing events failed", extra={"tenant_id": tenant_id})
        return head

    def publish(self, tenant_id: str, agent_id: str | None, payload: dict) -> int:
        """Number, store and deliver one event; answers how many connections got it."""
        return self.publish_many(tenant_id, [(agent_id, payload)])

    def publish_many(self, tenant_id: str, items: list[tuple[str | None, dict]]) -> int:
        """Several events of one tenant: one seq range, one write, then each delivered."""
        if not items:
            return 0
        for _agent_id, payload in items:
            if payload.get("event") in ev.AGENT_EVENTS:
                data = payload["data"]
                run_log.info(
                    "%s agent=%s session=%s attempt=%s%s",
                    payload["event"], data.get("agentId"), data.get("sessionId"), data.get("attempt"), _suffix(data),
                )
        try:
            head = self._number(tenant_id, [p for _, p in items])
            if not self._live:
                return 0
            now = self.c.clock.now().timestamp()
            delivered = 0
            for agent_id, payload in items:
                delivered += self._deliver(tenant_id, head.receivers(payload["seq"], agent_id, now), payload)
            return delivered
        except Exception:  # never let an event fail a run
            self.failures += 1
            log.exception("event delivery failed", extra={"tenant_id": tenant_id})
            return 0

    def _deliver(self, tenant_id: str, targets: list[str], payload: dict) -> int:
        if not targets:
            return 0
        gone = self.c.pusher.push(targets, payload)
        if gone:
            self._forget(tenant_id, gone)
        n = len(targets) - len([g for g in gone if g in targets])
        self.sent += n
        return n

    def _forget(self, tenant_id: str, connection_ids: list[str]) -> None:
        for cid in connection_ids:
            self.c.connections.remove(cid)
        self.store.forget(tenant_id, connection_ids)

    def publish_status(self, status_for) -> None:
        """``scheduler:status`` to every connection, each with its own tenant's counts."""
        if not self._live:
            return
        try:
            by_tenant: dict[str, list[str]] = {}
            for cid, tenant in self.c.connections.all_connections():
                by_tenant.setdefault(tenant, []).append(cid)
            now = self.c.clock.now().timestamp()
            for tenant, cids in by_tenant.items():
                payload = ev.scheduler_status(status_for(tenant), now)
                head = self._number(tenant, [payload])
                replaying = set(head.subs) - set(head.receivers(payload["seq"], None, now))
                self._deliver(tenant, [c for c in cids if c not in replaying], payload)
        except Exception:
            self.failures += 1
            log.exception("status delivery failed")

    def skipped(self, sessions: Iterable) -> int:
        """``agent:skipped`` for fires that did not run (sessions recorded ``SKIPPED``)."""
        now = self.c.clock.now().timestamp()
        by_tenant: dict[str, list[tuple[str, dict]]] = {}
        for s in sessions:
            payload = ev.skipped(s.agent_id, s.session_id, s.attempt, now=now, reason=s.skip_reason,
                                 scheduled_for=s.scheduled_for)
            by_tenant.setdefault(s.tenant_id, []).append((s.agent_id, payload))
        return sum(self.publish_many(tenant, items) for tenant, items in by_tenant.items())

    def schedule_changed(self, tenant_id: str, agent_id: str, *, version: int, action: str,
                         changed_by: str | None = None, schedule: dict | None = None) -> int:
        """``schedule:changed`` (``action``: CREATED, UPDATED, ENABLED, DISABLED or DELETED)."""
        payload = ev.schedule_changed(agent_id, now=self.c.clock.now().timestamp(), version=version,
                                      action=action, changed_by=changed_by, schedule=schedule)
        return self.publish(tenant_id, agent_id, payload)

    # --- reading and resuming --------------------------------------------------------------
    def page(self, tenant_id: str, since: int, limit: int) -> dict:
        """``GET /api/events``: the caller's retained events after ``since``, in seq order."""
        now = self.c.clock.now().timestamp()
        items = self.store.read(tenant_id, since, now, limit=limit)
        out: dict = {"items": items, "nextSince": items[-1]["seq"] if items else since}
        oldest = self._resync_point(tenant_id, since, now, first=items[0]["seq"] if items else None)
        if oldest is not None:
            out["oldestSeq"] = oldest  # ``since`` is older than what is kept: some events are gone
        return out

    def _resync_point(self, tenant_id: str, since: int, now: float, *, first: int | None,
                      last_seq: int | None = None) -> int | None:
        """The oldest retained seq when events after ``since`` are no longer kept, else None."""
        if first is None:
            last_seq = self.store.head(tenant_id).last_seq if last_seq is None else last_seq
            if since >= last_seq:
                return None if since == last_seq else last_seq + 1  # ahead of the stream: start over
            first = self.store.oldest_after(tenant_id, since, now)
            return last_seq + 1 if first is None else (first if first > since + 1 else None)
        return first if first > since + 1 else None

    def subscribe(self, tenant_id: str, connection_id: str, agent_ids: list[str], since: int | None,
                  following: Callable[[int], None] = lambda last_seq: None) -> None:
        """Follow ``agent_ids`` (the connection's whole subscription); with ``since``, replay
        the retained events after it (after a ``resync`` if some are gone), then go live.
        ``following(last_seq)`` is called once the subscription holds, before any replay."""
        if since is None:
            following(self.store.follow(tenant_id, connection_id, agent_ids).last_seq)
            return
        now = self.c.clock.now().timestamp()
        head = self.store.follow(tenant_id, connection_id, agent_ids, held_at=now)
        following(head.last_seq)
        subs = set(agent_ids)
        oldest = self._resync_point(tenant_id, since, now, first=None, last_seq=head.last_seq)
        if oldest is not None and not self._send(
                tenant_id, connection_id, [ev.envelope(ev.RESYNC, {"oldestSeq": oldest}, now)]):
            return
        replayed = min(since, head.last_seq)
        floor = oldest if oldest is not None else since + 1  # before it, missing events have expired
        target = head.last_seq
        for _ in range(REPLAY_ROUNDS):
            if target > replayed:
                if not self._replay(tenant_id, connection_id, subs, replayed, target, now, floor):
                    return
                replayed = target
            if self.store.go_live(tenant_id, connection_id, replayed, only_if_last=True) is not None:
                return
            target = self.store.head(tenant_id).last_seq
        # Events keep coming: go live now, then replay what was numbered before that (no
        # gap, no duplicate; live events may arrive among these last replayed ones).
        head = self.store.go_live(tenant_id, connection_id, replayed, only_if_last=False)
        if head.last_seq > replayed:
            self._replay(tenant_id, connection_id, subs, replayed, head.last_seq, now, floor)

    def _replay(self, tenant_id: str, connection_id: str, subs: set[str], after: int, through: int,
                now: float, floor: int) -> bool:
        """Send the retained events in ``(after, through]`` that match ``subs``, in order.
        A seq from ``floor`` on that is numbered but not stored yet belongs to a publisher
        writing it right now: read again a few times before giving it up as lost."""
        events = self.store.read(tenant_id, after, now, limit=through - after, until=through)
        for _ in range(HOLE_WAITS):
            present = {e["seq"] for e in events}
            if all(s in present for s in range(max(after + 1, floor), through + 1)):
                break
            self._sleep(HOLE_WAIT_SECONDS)
            events = self.store.read(tenant_id, after, now, limit=through - after, until=through)
        matching = [e for e in events if _matches(e, subs)]
        if len(matching) > REPLAY_LIMIT:
            matching = matching[-REPLAY_LIMIT:]
            resync = ev.envelope(ev.RESYNC, {"oldestSeq": matching[0]["seq"], "reason": "TOO_MANY"}, now)
            matching = [resync] + matching
        return self._send(tenant_id, connection_id, matching)

    def _send(self, tenant_id: str, connection_id: str, payloads: list[dict]) -> bool:
        """Replay frames, in order. If one cannot be sent the connection is closed (the client
        resumes from what it got) rather than left holding, or live with a hole."""
        if not payloads or not self._live:
            return True
        result = self.c.pusher.send_in_order(connection_id, payloads)
        if result != "ok":
            if result != "gone":
                self.c.pusher.close(connection_id)
            self._forget(tenant_id, [connection_id])
        return result == "ok"


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
    if data.get("reason"):
        parts.append(f" reason={data['reason']}")
    return "".join(parts)
