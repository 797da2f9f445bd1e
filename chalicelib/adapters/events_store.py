"""The event stream in DynamoDB: a per-tenant ``seq``, events kept by TTL, WebSocket tickets.

Layout (one table, ``tenant_id`` / ``seq``; see ``EventModel``):

- ``seq`` >= 1: one item per event, written once (not once per connection), with
  ``expires_at`` = time + ``SCHEDULER_EVENT_RETENTION_HOURS`` (the table's TTL).
  DynamoDB deletes expired items late (up to days), so every read also filters on
  ``expires_at``: what is past its retention is never returned.
- ``seq`` 0 is the tenant's *head*: ``last_seq`` (the counter), ``subs`` (which
  connection follows which agents) and ``live_from`` (per connection: the last seq
  it received by replay; while a replay runs, minus the time it began: a *hold*). Taking a seq is one
  ``UpdateItem ADD last_seq :n`` that returns the whole head, so the publisher learns,
  at the very instant its seq was taken, exactly which connections must get the event:
  a subscription made after that instant sees the event in its replay, one made
  before sees it live; never both, never neither.
- ``ticket#<sha256 of the ticket>`` / 0: a single-use WebSocket ticket (only the hash
  is stored), deleted when used, with a TTL for the unused ones.

Every AWS error leaves as ``StorageError`` (``aws_call``); a lost condition is ``None``.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Iterable

from chalicelib.adapters.errors import aws_call
from chalicelib.adapters.tables import EventModel
from chalicelib.errors import ConditionFailed

HEAD_SEQ = 0
HOLD_SECONDS = 120  # a hold older than this was abandoned (its handler died mid-replay): live again
TICKET_PREFIX = "ticket#"
BATCH_SIZE = 25  # BatchWriteItem's limit


@dataclass(frozen=True)
class Head:
    """The tenant's stream head as one atomic read returned it."""

    last_seq: int
    subs: dict[str, list[str]] = field(default_factory=dict)
    live_from: dict[str, int] = field(default_factory=dict)

    def receivers(self, seq: int, agent_id: str | None, now: float) -> list[str]:
        """Connections that get event ``seq`` live: subscribed to ``agent_id`` (or ``*``; an
        event without an agent goes to every connection) and not covered by a replay
        (``seq`` after the connection's ``live_from``; nothing while it holds, unless the
        hold is older than ``HOLD_SECONDS``: its replay died, better late than never)."""
        out = []
        for cid, subs in self.subs.items():
            if not (agent_id is None or "*" in subs or agent_id in subs):
                continue
            floor = self.live_from.get(cid)
            if floor is not None and floor < 0 and now + floor < HOLD_SECONDS:
                continue
            if floor is not None and seq <= floor:
                continue
            out.append(cid)
        return out


@dataclass(frozen=True)
class Ticket:
    tenant_id: str
    scopes: str


def _head(m: EventModel) -> Head:
    subs = m.subs.as_dict() if m.subs is not None else {}
    live = m.live_from.as_dict() if m.live_from is not None else {}
    return Head(
        last_seq=int(m.last_seq or 0),
        subs={k: [str(x) for x in (v or [])] for k, v in subs.items()},
        live_from={k: int(v) for k, v in live.items()},
    )


def hold(now: float) -> int:
    """The ``live_from`` of a connection whose replay began at ``now``."""
    return -max(1, int(now))


def _ttl(epoch: float) -> datetime:
    return datetime.fromtimestamp(int(epoch), tz=timezone.utc)


def ticket_key(ticket: str) -> str:
    return TICKET_PREFIX + hashlib.sha256(ticket.encode()).hexdigest()


class EventStore:
    def __init__(self, retention_hours: int) -> None:
        self.retention_seconds = int(retention_hours) * 3600

    # --- the head ----------------------------------------------------------------------
    def allocate(self, tenant_id: str, count: int = 1) -> Head:
        """Take ``count`` consecutive seqs (``last_seq - count + 1 .. last_seq`` of the answer)."""
        if count < 1:
            raise ValueError("count must be at least 1")
        e = EventModel
        head = e(tenant_id, HEAD_SEQ)
        with aws_call("allocate event seq"):
            head.update(actions=[e.last_seq.add(count), e.subs.set(e.subs | {}), e.live_from.set(e.live_from | {})])
        return _head(head)

    def head(self, tenant_id: str) -> Head:
        with aws_call("read event head"):
            try:
                return _head(EventModel.get(tenant_id, HEAD_SEQ, consistent_read=True))
            except EventModel.DoesNotExist:
                return Head(0)

    def _init_head(self, tenant_id: str) -> None:
        e = EventModel
        with aws_call("create event head"):
            e(tenant_id, HEAD_SEQ).update(
                actions=[e.last_seq.set(e.last_seq | 0), e.subs.set(e.subs | {}), e.live_from.set(e.live_from | {})]
            )

    def follow(self, tenant_id: str, connection_id: str, agent_ids: list[str], *, held_at: float | None = None) -> Head:
        """Set what a connection follows; with ``held_at`` (now) the live path sends it nothing
        until ``go_live`` (a replay is about to run). Answers the head just after the change."""
        self._init_head(tenant_id)
        e = EventModel
        actions = [e.subs[connection_id].set(list(agent_ids))]
        if held_at is not None:
            actions.append(e.live_from[connection_id].set(hold(held_at)))
        head = e(tenant_id, HEAD_SEQ)
        with aws_call("follow events"):
            head.update(actions=actions)
        return _head(head)

    def go_live(self, tenant_id: str, connection_id: str, through: int, *, only_if_last: bool) -> Head | None:
        """End a replay that delivered everything up to ``through``: later events go live.
        ``only_if_last``: only while ``through`` is still the last seq (else ``None``: more
        events came meanwhile, replay them first), so no live event can overtake the replay."""
        e = EventModel
        head = e(tenant_id, HEAD_SEQ)
        try:
            with aws_call("go live"):
                head.update(
                    actions=[e.live_from[connection_id].set(int(through))],
                    condition=(e.last_seq == int(through)) if only_if_last else None,
                )
        except ConditionFailed:
            return None
        return _head(head)

    def forget(self, tenant_id: str, connection_ids: Iterable[str]) -> None:
        """Drop connections from the head (disconnected, or gone)."""
        ids = list(dict.fromkeys(connection_ids))
        if not ids:
            return
        e = EventModel
        actions = []
        for cid in ids:
            actions += [e.subs[cid].remove(), e.live_from[cid].remove()]
        try:
            with aws_call("forget connections"):
                e(tenant_id, HEAD_SEQ).update(actions=actions, condition=e.last_seq.exists())
        except ConditionFailed:  # no head: nothing to forget
            pass

    # --- events --------------------------------------------------------------------------
    def put(self, tenant_id: str, events: list[dict], now: float) -> None:
        """Store events (each already carrying its ``seq`` and ``id``), once each."""
        expires = int(now) + self.retention_seconds
        items = [
            EventModel(
                tenant_id,
                int(ev["seq"]),
                event_id=ev["id"],
                name=ev["event"],
                agent_id=(ev.get("data") or {}).get("agentId"),
                body=json.dumps(ev, separators=(",", ":"), default=str),
                expires_at=_ttl(expires),
            )
            for ev in events
        ]
        with aws_call("store events"):
            if len(items) == 1:
                items[0].save()
                return
            with EventModel.batch_write() as batch:
                for item in items:
                    batch.save(item)

    def read(self, tenant_id: str, since: int, now: float, *, limit: int, until: int | None = None,
             agent_ids: Iterable[str] | None = None) -> list[dict]:
        """Retained events with ``since < seq (<= until)``, in seq order, at most ``limit``.
        ``agent_ids`` (a subscription; ``*`` for all) keeps the events it matches."""
        e = EventModel
        if until is not None and until <= since:
            return []
        key = e.seq.between(since + 1, until) if until is not None else e.seq > since
        wanted = None if agent_ids is None else set(agent_ids)
        out: list[dict] = []
        with aws_call("read events"):
            for m in e.query(tenant_id, key, filter_condition=e.expires_at > _ttl(now), consistent_read=True,
                             page_size=min(max(limit, 10), 500)):
                if wanted is not None and "*" not in wanted and m.agent_id is not None and m.agent_id not in wanted:
                    continue
                out.append(json.loads(m.body))
                if len(out) >= limit:
                    break
        return out

    def oldest_after(self, tenant_id: str, since: int, now: float) -> int | None:
        """The seq of the first retained event after ``since`` (None: nothing retained after it)."""
        e = EventModel
        with aws_call("read events"):
            for m in e.query(tenant_id, e.seq > since, filter_condition=e.expires_at > _ttl(now),
                             consistent_read=True, attributes_to_get=["seq", "expires_at"], page_size=100):
                return int(m.seq)
        return None

    # --- WebSocket tickets ------------------------------------------------------------------
    def put_ticket(self, ticket: str, tenant_id: str, scopes: str, expires_at: float) -> None:
        with aws_call("store ticket"):
            EventModel(ticket_key(ticket), HEAD_SEQ, owner=tenant_id, scopes=scopes,
                       expires_at=_ttl(expires_at)).save()

    def take_ticket(self, ticket: str, now: float) -> Ticket | None:
        """The ticket's owner, once: the ticket is deleted as it is read (None: unknown, used or expired)."""
        e = EventModel
        key = ticket_key(ticket)
        with aws_call("read ticket"):
            try:
                m = e.get(key, HEAD_SEQ, consistent_read=True)
            except e.DoesNotExist:
                return None
        if m.owner is None or m.expires_at is None:
            return None
        try:
            with aws_call("use ticket"):
                # Conditional delete: of two connects with one ticket, exactly one wins.
                m.delete(condition=e.owner.exists())
        except ConditionFailed:
            return None
        if m.expires_at.timestamp() <= now:
            return None
        return Ticket(m.owner, m.scopes or "")
