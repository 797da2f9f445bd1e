"""Redrive dead runs: the sessions table is the record, the SQS DLQ the parking lot.

Implemented with receive, send and delete (moto lacks start_message_move_task,
and a selective redrive needs it anyway): every selected dead session gets a
fresh run (trigger REDRIVE) through normal admission, and its messages are
removed from the DLQ. Messages of runs not selected are made visible again.
"""
from __future__ import annotations

import json
import logging

from chalicelib.domain.ids import manual_session_id
from chalicelib.domain.model import SessionStatus, Trigger
from chalicelib.domain.records import STAGE_PENDING, Session

log = logging.getLogger("agent_scheduler.dlq")
MAX_RECEIVE_ROUNDS = 50


def _selected(container, tenant_id: str | None, session_ids) -> list:
    wanted = set(session_ids) if session_ids else None
    out = []
    token = None
    while True:
        items, token = container.sessions.list_dlq(tenant_id, 100, token)
        out += [s for s in items if wanted is None or s.session_id in wanted]
        if not token:
            return out


def redrive(container, tenant_id: str | None, session_ids=None) -> int:
    c = container
    now = c.clock.now().timestamp()
    chosen = _selected(c, tenant_id, session_ids)
    done: set[str] = set()
    for entry in chosen:
        s = c.sessions.get(entry.agent_id, entry.session_id)
        if s is None or s.status is not SessionStatus.DEAD:
            continue
        if c.agents.get(s.tenant_id, s.agent_id) is None:
            continue  # its agent was deleted: nothing to run it with
        fresh = Session(
            agent_id=s.agent_id, session_id=manual_session_id(now), tenant_id=s.tenant_id,
            status=SessionStatus.QUEUED, trigger=Trigger.REDRIVE, priority=s.priority,
            scheduled_for=now, queued_at=now, max_attempts=s.max_attempts, timeout_seconds=s.timeout_seconds,
            input=s.input, stage=STAGE_PENDING, redriven_from=s.session_id,
        )
        if not c.runs.redrive(s, fresh):
            continue  # redriven by someone else meanwhile
        done.add(s.session_id)
    _drain_messages(c, done)
    if done:
        c.dispatcher.admit_pending()
    log.info("redrive", extra={"redriven": len(done)})
    return len(done)


def _drain_messages(c, session_ids: set[str]) -> None:
    """Delete the DLQ messages of redriven runs; leave the others visible."""
    if not session_ids or not c.settings.dlq_url:
        return
    remaining = set(session_ids)
    release: list[str] = []
    try:
        for _ in range(MAX_RECEIVE_ROUNDS):
            if not remaining:
                return
            msgs = c.dlq.receive(max_messages=10, wait_seconds=0, visibility=60)
            if not msgs:
                return
            _sort(c, msgs, session_ids, remaining, release)
    finally:
        for h in release:  # not ours to take: visible again at once
            c.dlq.change_visibility(h, 0)


def _sort(c, msgs, session_ids, remaining, release) -> None:
    delete = []
    for m in msgs:
        try:
            sid = json.loads(m["Body"]).get("s")
        except (ValueError, AttributeError):
            sid = None
        if sid in session_ids:
            delete.append(m["ReceiptHandle"])
            remaining.discard(sid)
        else:
            release.append(m["ReceiptHandle"])
    if delete:
        c.dlq.delete_batch(delete)
