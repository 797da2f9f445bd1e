"""Identifiers and stable hashes. Pure.

Session ids start with their UTC time so that a DynamoDB range-key query
returns history newest first. A scheduled run's id is derived from
(agent, fire time), which is what makes a fire run exactly once: every tick
that plans it computes the same id and only one conditional put can win.
"""
from __future__ import annotations

import hashlib
import secrets
import uuid
from datetime import datetime, timezone


def _stamp(epoch: float) -> str:
    dt = datetime.fromtimestamp(epoch, tz=timezone.utc)
    return dt.strftime("%Y%m%dT%H%M%S") + f"{dt.microsecond // 1000:03d}Z"


def _digest(*parts: str) -> bytes:
    return hashlib.sha256("\x1f".join(parts).encode()).digest()


def new_agent_id() -> str:
    return "ag_" + uuid.uuid4().hex[:20]


def scheduled_session_id(agent_id: str, fire_epoch: float) -> str:
    """Deterministic: the same (agent, fire time) always gives the same id."""
    return f"{_stamp(fire_epoch)}-{_digest(agent_id, repr(float(fire_epoch))).hex()[:12]}"


def manual_session_id(queued_epoch: float) -> str:
    return f"{_stamp(queued_epoch)}-m{secrets.token_hex(6)}"


def stable_bucket(key: str, buckets: int) -> int:
    """A stable (process-independent) hash of ``key`` into ``range(buckets)``."""
    return int.from_bytes(_digest(key)[:8], "big") % buckets


def jitter_offset(agent_id: str, fire_epoch: float, jitter_seconds: int) -> int:
    """Deterministic per fire: every tick computes the same delay."""
    if jitter_seconds <= 0:
        return 0
    return int.from_bytes(_digest("jitter", agent_id, repr(float(fire_epoch)))[:8], "big") % (
        jitter_seconds + 1
    )


def due_shard(agent_id: str, shards: int) -> str:
    return f"d{stable_bucket(agent_id, shards):03d}"


def pending_shard(session_id: str, shards: int) -> str:
    return f"p{stable_bucket(session_id, shards):03d}"


def pending_rank(priority_rank: int, eligible_epoch: float, session_id: str, backfill: bool = False) -> str:
    """Sorts as the admission order: priority, then live runs before backfill runs, then
    eligible time, then id. (``B`` sorts after every digit, so a backfill run waits behind
    every live run of its priority, however old the fire it backfills.)"""
    lane = "B" if backfill else ""
    return f"{priority_rank}#{lane}{int(eligible_epoch * 1000):015d}#{session_id}"
