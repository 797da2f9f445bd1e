"""DynamoDB adapters (pynamodb). The only code that touches the tables.

Every method converts between pynamodb items and the plain records in
``chalicelib.domain.records``, and every AWS error leaves here as a
``StorageError`` (retryable or not) or a ``ConditionFailed`` (lost a race).
"""
from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from typing import Iterable, Iterator, Sequence

from pynamodb.expressions.operand import Path

from chalicelib.adapters.errors import aws_call, translate
from chalicelib.adapters.tables import AgentTenantModel, ConnectionModel, ControlModel, SessionModel
from chalicelib.domain.budget import Budget
from chalicelib.domain.ids import pending_rank, pending_shard
from chalicelib.domain.model import Priority, SessionStatus, Trigger
from chalicelib.domain.records import STAGE_PENDING, Agent, Session
from chalicelib.domain.schedule import ScheduleSpec
from chalicelib.errors import ConditionFailed, NotFound, StorageError, ValidationError


# --- pagination tokens ---------------------------------------------------------
def encode_token(key: dict | None) -> str | None:
    if not key:
        return None
    return base64.urlsafe_b64encode(json.dumps(key, separators=(",", ":")).encode()).decode()


AGENT_KEY = {"tenant_id": "S", "agent_id": "S"}
SESSION_KEY = {"agent_id": "S", "session_id": "S"}
DLQ_KEY = {"agent_id": "S", "session_id": "S", "dlq_tenant": "S", "failed_at": "N"}


def decode_token(token: str | None, hash_name: str, hash_value: str | None, shape: dict[str, str] | None = None) -> dict | None:
    """A page token back into a DynamoDB key, refused (400 naming ``nextToken``) unless it
    has exactly the key's attributes and types and belongs to the caller."""
    if token is None or token == "":
        return None
    bad = ValidationError("nextToken", "nextToken is not a token this API returned")
    try:
        key = json.loads(base64.urlsafe_b64decode(token.encode() + b"=" * (-len(token) % 4)))
    except (ValueError, TypeError):
        raise bad from None
    shape = shape or {}
    if not isinstance(key, dict) or set(key) != set(shape):
        raise bad
    for name, typ in shape.items():
        v = key[name]
        if not isinstance(v, dict) or list(v) != [typ] or not isinstance(v[typ], str) or not v[typ] or len(v[typ]) > 256:
            raise bad
        if typ == "N":
            try:
                float(v[typ])
            except ValueError:
                raise bad from None
    if hash_value is not None and key[hash_name]["S"] != hash_value:
        raise bad
    return key


# --- conversions ------------------------------------------------------------
def agent_from_item(m: AgentTenantModel) -> Agent:
    return Agent(
        tenant_id=m.tenant_id,
        agent_id=m.agent_id,
        name=m.name,
        kind=m.kind,
        description=m.description,
        config=m.config or {},
        timeout_seconds=int(m.timeout_seconds),
        max_retries=int(m.max_retries),
        created_at=float(m.created_at),
        updated_at=float(m.updated_at),
        schedule=ScheduleSpec.from_item(m.schedule) if m.schedule else None,
        next_run_at=None if m.next_run_at is None else float(m.next_run_at),
        active_runs=int(m.active_runs or 0),
        consecutive_failures=int(m.consecutive_failures or 0),
        alerted=bool(m.alerted),
        schedule_version=int(m.schedule_version or 0),
        labels=dict(m.labels.as_dict()) if m.labels else {},
        max_concurrency=None if m.max_concurrency is None else int(m.max_concurrency),
        throttle={k: int(v) for k, v in m.throttle.items()} if m.throttle else None,
        pools=tuple(m.pools or ()),
        signing_keys=m.signing_keys or None,
        heartbeat_seconds=None if m.heartbeat_seconds is None else int(m.heartbeat_seconds),
        budget=Budget.from_json(m.budget),
        pause_after_failures=None if m.pause_after_failures is None else int(m.pause_after_failures),
    )


def agent_to_item(a: Agent, *, due_shard: str | None, due_at: float | None) -> AgentTenantModel:
    return AgentTenantModel(
        a.tenant_id,
        a.agent_id,
        name=a.name,
        kind=a.kind,
        description=a.description,
        config=a.config,
        labels=a.labels or None,
        timeout_seconds=a.timeout_seconds,
        max_retries=a.max_retries,
        created_at=a.created_at,
        updated_at=a.updated_at,
        schedule=a.schedule.to_item() if a.schedule else None,
        next_run_at=a.next_run_at,
        due_shard=due_shard,
        due_at=due_at,
        active_runs=a.active_runs,
        consecutive_failures=a.consecutive_failures,
        alerted=a.alerted,
        max_concurrency=a.max_concurrency,
        throttle=a.throttle,
        pools=list(a.pools) or None,
        signing_keys=a.signing_keys,
        heartbeat_seconds=a.heartbeat_seconds,
        budget=a.budget.to_json() if a.budget else None,
        pause_after_failures=a.pause_after_failures,
    )


def session_from_item(m: SessionModel) -> Session:
    return Session(
        agent_id=m.agent_id,
        session_id=m.session_id,
        tenant_id=m.tenant_id,
        status=SessionStatus(m.status),
        trigger=Trigger(m.trigger),
        priority=Priority(m.priority),
        scheduled_for=float(m.scheduled_for),
        queued_at=float(m.queued_at),
        max_attempts=int(m.max_attempts),
        timeout_seconds=int(m.timeout_seconds),
        attempt=int(m.attempt or 0),
        started_at=_f(m.started_at),
        finished_at=_f(m.finished_at),
        duration_ms=None if m.duration_ms is None else int(m.duration_ms),
        input=m.input,
        output=m.output,
        error=m.error,
        skip_reason=m.skip_reason,
        next_attempt_at=_f(m.next_attempt_at),
        stage=m.stage,
        admitted_at=_f(m.admitted_at),
        run_lease_until=_f(m.run_lease_until),
        slot=m.slot,
        claim=m.claim,
        tx=m.tx,
        check_overlap=bool(m.check_overlap),
        redriven_from=m.redriven_from,
        redriven_to=m.redriven_to,
        cancel_requested=bool(m.cancel_requested),
        failed_at=_f(m.failed_at),
        in_dlq=m.dlq_tenant is not None,
        holds=tuple(m.holds or ()),
        waiting_reason=m.waiting_reason,
        waiting_for=m.waiting_for,
        callback_hash=m.callback_hash,
        prev_callback_hash=m.prev_callback_hash,
        end_attempt=None if m.end_attempt is None else int(m.end_attempt),
        ended_by=m.ended_by,
        end_hash=m.end_hash,
        is_async=bool(m.is_async),
        heartbeat_seconds=None if m.heartbeat_seconds is None else int(m.heartbeat_seconds),
        last_heartbeat_at=_f(m.last_heartbeat_at),
        last_heartbeat_details=m.last_heartbeat_details,
        progress=m.progress,
        progress_event_at=_f(m.progress_event_at),
        rate_limited_waits=int(m.rate_limited_waits or 0),
        usage=m.usage,
    )


def _f(v) -> float | None:
    return None if v is None else float(v)


def session_to_item(s: Session, *, shards: int, expires_at: float | None) -> SessionModel:
    pending = s.stage == STAGE_PENDING
    return SessionModel(
        s.agent_id,
        s.session_id,
        tenant_id=s.tenant_id,
        status=s.status.value,
        trigger=s.trigger.value,
        priority=s.priority.value,
        scheduled_for=s.scheduled_for,
        queued_at=s.queued_at,
        max_attempts=s.max_attempts,
        timeout_seconds=s.timeout_seconds,
        attempt=s.attempt,
        started_at=s.started_at,
        finished_at=s.finished_at,
        duration_ms=s.duration_ms,
        input=s.input,
        output=s.output,
        error=s.error,
        skip_reason=s.skip_reason,
        next_attempt_at=s.next_attempt_at,
        stage=s.stage,
        admitted_at=s.admitted_at,
        run_lease_until=s.run_lease_until,
        slot=s.slot,
        claim=s.claim,
        tx=s.tx,
        check_overlap=s.check_overlap or None,
        redriven_from=s.redriven_from,
        redriven_to=s.redriven_to,
        cancel_requested=s.cancel_requested or None,
        pending_shard=pending_shard(s.session_id, shards) if pending else None,
        pending_rank=pending_rank(s.priority.rank, s.eligible_at, s.session_id,
                                  s.trigger is Trigger.BACKFILL) if pending else None,
        dlq_tenant=s.tenant_id if s.in_dlq else None,
        failed_at=s.failed_at,
        expires_at=_ttl(expires_at),
        holds=list(s.holds) or None,
        waiting_reason=s.waiting_reason,
        waiting_for=s.waiting_for,
        rate_limited_waits=s.rate_limited_waits or None,
        usage=s.usage,
    )


def _ttl(epoch: float | None):
    from datetime import datetime, timezone

    return None if epoch is None else datetime.fromtimestamp(int(epoch), tz=timezone.utc)


# --- agents -------------------------------------------------------------------
_AGENT_CACHE: dict[tuple[str, str], tuple[float, Agent | None]] = {}  # this process's recent agent reads


def forget_agent(tenant_id: str, agent_id: str) -> None:
    """Every write of an agent in this process drops its cached read."""
    _AGENT_CACHE.pop((tenant_id, agent_id), None)


class AgentStore:
    def __init__(self, shards: int, cache_seconds: float = 30.0) -> None:
        self.shards = shards
        self.cache_seconds = cache_seconds
        self._cache = _AGENT_CACHE

    def get_cached(self, tenant_id: str, agent_id: str, now: float) -> Agent | None:
        """The agent as read at most ``cache_seconds`` ago (by this process): the worker's read.
        This process's own writes drop the entry at once."""
        hit = self._cache.get((tenant_id, agent_id))
        if hit is not None and now - hit[0] < self.cache_seconds:
            return hit[1]
        agent = self.get(tenant_id, agent_id)
        if len(self._cache) > 10_000:
            self._cache.clear()
        self._cache[(tenant_id, agent_id)] = (now, agent)
        return agent

    def _forget(self, tenant_id: str, agent_id: str) -> None:
        forget_agent(tenant_id, agent_id)

    def get_many_cached(self, keys: Iterable[tuple[str, str]], now: float, max_age: float) -> dict[tuple[str, str], Agent]:
        """(tenant, agent) -> the agent, each read at most ``max_age`` ago by this process; the
        rest in BatchGetItem requests of 100. A deleted agent is left out."""
        out: dict[tuple[str, str], Agent] = {}
        miss = []
        for k in dict.fromkeys(keys):
            hit = self._cache.get(k)
            if hit is not None and now - hit[0] < max_age:
                if hit[1] is not None:
                    out[k] = hit[1]
            else:
                miss.append(k)
        for i in range(0, len(miss), 100):
            part = miss[i:i + 100]
            with aws_call("get agents"):
                got = {(m.tenant_id, m.agent_id): agent_from_item(m) for m in AgentTenantModel.batch_get(part)}
            if len(self._cache) > 10_000:
                self._cache.clear()
            for k in part:
                self._cache[k] = (now, got.get(k))
                if k in got:
                    out[k] = got[k]
        return out

    def prime(self, agents: Iterable[Agent], now: float) -> None:
        """Agents just read in full (the tick's due schedules): later reads within the cache age use them."""
        for a in agents:
            self._cache[(a.tenant_id, a.agent_id)] = (now, a)

    def create(self, agent: Agent) -> None:
        self._forget(agent.tenant_id, agent.agent_id)
        item = agent_to_item(agent, due_shard=None, due_at=None)
        with aws_call("create agent"):
            item.save(condition=AgentTenantModel.agent_id.does_not_exist())

    def get(self, tenant_id: str, agent_id: str) -> Agent | None:
        with aws_call("get agent"):
            try:
                return agent_from_item(AgentTenantModel.get(tenant_id, agent_id))
            except AgentTenantModel.DoesNotExist:
                return None

    def list(self, tenant_id: str, limit: int, token: str | None,
             labels: dict[str, str] | None = None) -> tuple[list[Agent], str | None]:
        """One page of the tenant's agents; with ``labels``, only those carrying every one of them
        (filtered by DynamoDB after the page is read: a page may hold fewer than ``limit``)."""
        start = decode_token(token, "tenant_id", tenant_id, AGENT_KEY)
        condition = None
        for key, value in (labels or {}).items():
            one = Path(["labels", key]) == value
            condition = one if condition is None else condition & one
        with aws_call("list agents"):
            it = AgentTenantModel.query(tenant_id, limit=limit, last_evaluated_key=start, filter_condition=condition)
            items = [agent_from_item(m) for m in it]
            return items, encode_token(it.last_evaluated_key)

    def iter_tenant(self, tenant_id: str) -> Iterator[Agent]:
        with aws_call("list agents"):
            for m in AgentTenantModel.query(tenant_id):
                yield agent_from_item(m)

    def save(self, agent: Agent, *, due_shard: str | None, due_at: float | None, must_exist: bool,
             expect_next_run_at=None, check_next_run_at: bool = False) -> None:
        """Write the agent's own fields and schedule; run bookkeeping is kept as stored.

        With ``check_next_run_at`` the write only lands if the tick has not advanced the
        schedule since it was read (else ConditionFailed: read again and retry).
        """
        self._forget(agent.tenant_id, agent.agent_id)
        item, actions, cond = self.save_request(
            agent, due_shard=due_shard, due_at=due_at, must_exist=must_exist,
            expect_next_run_at=expect_next_run_at, check_next_run_at=check_next_run_at,
        )
        with aws_call("update agent"):
            item.update(actions=actions, condition=cond)

    @staticmethod
    def save_request(agent: Agent, *, due_shard: str | None, due_at: float | None, must_exist: bool,
                     expect_next_run_at=None, check_next_run_at: bool = False) -> tuple:
        """(item, update actions, condition) of :meth:`save`, for a caller that adds it to a transaction."""
        a = AgentTenantModel
        actions = [
            a.name.set(agent.name),
            a.kind.set(agent.kind),
            a.config.set(agent.config),
            a.timeout_seconds.set(agent.timeout_seconds),
            a.max_retries.set(agent.max_retries),
            a.updated_at.set(agent.updated_at),
        ]
        actions.append(a.budget.set(agent.budget.to_json()) if agent.budget is not None else a.budget.remove())
        actions.append(a.pause_after_failures.set(agent.pause_after_failures)
                       if agent.pause_after_failures is not None else a.pause_after_failures.remove())
        actions.append(a.description.set(agent.description) if agent.description is not None else a.description.remove())
        actions.append(a.labels.set(agent.labels) if agent.labels else a.labels.remove())
        actions.append(a.max_concurrency.set(agent.max_concurrency) if agent.max_concurrency is not None
                       else a.max_concurrency.remove())
        actions.append(a.throttle.set(agent.throttle) if agent.throttle else a.throttle.remove())
        actions.append(a.pools.set(list(agent.pools)) if agent.pools else a.pools.remove())
        actions.append(a.heartbeat_seconds.set(agent.heartbeat_seconds) if agent.heartbeat_seconds is not None
                       else a.heartbeat_seconds.remove())
        if agent.schedule is None:
            actions += [a.schedule.remove(), a.next_run_at.remove(), a.due_shard.remove(), a.due_at.remove()]
        else:
            actions += [a.schedule.set(agent.schedule.to_item())]
            actions.append(a.next_run_at.set(agent.next_run_at) if agent.next_run_at is not None else a.next_run_at.remove())
            if due_shard is not None and due_at is not None:
                actions += [a.due_shard.set(due_shard), a.due_at.set(due_at)]
            else:
                actions += [a.due_shard.remove(), a.due_at.remove()]
        item = AgentTenantModel(agent.tenant_id, agent.agent_id)
        cond = a.agent_id.exists() if must_exist else None
        if check_next_run_at:
            same = a.next_run_at.does_not_exist() if expect_next_run_at is None else (a.next_run_at == expect_next_run_at)
            cond = same if cond is None else cond & same
        return item, actions, cond

    def set_signing_keys(self, tenant_id: str, agent_id: str, keys: dict) -> None:
        """Replace the agent's encrypted signing secrets (NotFound if it is gone)."""
        self._forget(tenant_id, agent_id)
        a = AgentTenantModel
        with aws_call("save signing keys"):
            try:
                a(tenant_id, agent_id).update(actions=[a.signing_keys.set(keys)], condition=a.agent_id.exists())
            except Exception as exc:
                err = translate(exc, "save signing keys")
                if isinstance(err, ConditionFailed):
                    raise NotFound(f"agent {agent_id!r} not found") from None
                raise err from exc

    def delete(self, tenant_id: str, agent_id: str) -> bool:
        self._forget(tenant_id, agent_id)
        with aws_call("delete agent"):
            try:
                AgentTenantModel(tenant_id, agent_id).delete(condition=AgentTenantModel.agent_id.exists())
                return True
            except Exception as exc:  # translated below
                err = translate(exc, "delete agent") if not isinstance(exc, StorageError) else exc
                if isinstance(err, ConditionFailed):
                    return False
                raise err from exc

    def query_due(self, shard: str, until: float) -> Iterator[Agent]:
        """Enabled schedules of one shard due at or before ``until`` (all pages)."""
        with aws_call("query due schedules"):
            for m in AgentTenantModel.due_index.query(shard, AgentTenantModel.due_at <= until):
                yield agent_from_item(m)

    def add_active_runs(self, tenant_id: str, agent_id: str, delta: int) -> None:
        a = AgentTenantModel
        with aws_call("count active runs"):
            try:
                a(tenant_id, agent_id).update(
                    actions=[a.active_runs.add(delta)], condition=a.agent_id.exists()
                )
            except Exception as exc:
                err = translate(exc, "count active runs")
                if not isinstance(err, ConditionFailed):  # agent deleted meanwhile: nothing to count
                    raise err from exc

    def record_run_result(self, tenant_id: str, agent_id: str, *, failed: bool, threshold: int) -> bool:
        """Count one finished run; return True exactly once when failures reach ``threshold``."""
        a = AgentTenantModel
        item = a(tenant_id, agent_id)
        with aws_call("record run result"):
            try:
                if not failed:
                    item.update(
                        actions=[a.active_runs.add(-1), a.consecutive_failures.set(0), a.alerted.set(False)],
                        condition=a.agent_id.exists(),
                    )
                    return False
                item.update(
                    actions=[a.active_runs.add(-1), a.consecutive_failures.add(1)],
                    condition=a.agent_id.exists(),
                )
                if (item.consecutive_failures or 0) >= threshold and not item.alerted:
                    try:
                        item.update(
                            actions=[a.alerted.set(True)],
                            condition=a.agent_id.exists() & (a.alerted != True),  # noqa: E712
                        )
                        return True
                    except Exception as exc:
                        if isinstance(translate(exc, "alert"), ConditionFailed):
                            return False  # another worker raised it
                        raise
                return False
            except Exception as exc:
                err = translate(exc, "record run result")
                if isinstance(err, ConditionFailed):
                    return False
                raise err from exc


# --- sessions -----------------------------------------------------------------
class SessionStore:
    def __init__(self, shards: int, retention_days: int) -> None:
        self.shards = shards
        self.retention = retention_days * 86400

    def expires(self, base: float) -> float:
        return base + self.retention

    def item(self, s: Session) -> SessionModel:
        return session_to_item(s, shards=self.shards, expires_at=self.expires(s.finished_at or s.queued_at))

    def create(self, s: Session) -> None:
        with aws_call("create session"):
            self.item(s).save(condition=SessionModel.session_id.does_not_exist())

    def get(self, agent_id: str, session_id: str) -> Session | None:
        with aws_call("get session"):
            try:
                return session_from_item(SessionModel.get(agent_id, session_id, consistent_read=True))
            except SessionModel.DoesNotExist:
                return None

    def batch_get(self, keys: Sequence[tuple[str, str]]) -> dict[str, Session]:
        if not keys:
            return {}
        with aws_call("get sessions"):
            return {m.session_id: session_from_item(m) for m in SessionModel.batch_get(list(keys))}

    def list(
        self, agent_id: str, limit: int, token: str | None, status: str | None
    ) -> tuple[list[Session], str | None]:
        start = decode_token(token, "agent_id", agent_id, SESSION_KEY)
        cond = (SessionModel.status == status) if status else None
        with aws_call("list sessions"):
            items: list[Session] = []
            last = start
            # A filter can leave a page short: read on until the page is full.
            while True:
                it = SessionModel.query(
                    agent_id,
                    filter_condition=cond,
                    scan_index_forward=False,
                    limit=limit - len(items) if cond is None else max(limit, 25),
                    last_evaluated_key=last,
                )
                for m in it:
                    items.append(session_from_item(m))
                    if len(items) == limit:
                        last = {"agent_id": {"S": m.agent_id}, "session_id": {"S": m.session_id}}
                        return items, encode_token(last)
                last = it.last_evaluated_key
                if not last:
                    return items, None

    def recent(self, agent_id: str, n: int) -> list[Session]:
        """The agent's ``n`` newest sessions."""
        with aws_call("list sessions"):
            return [session_from_item(m) for m in SessionModel.query(agent_id, scan_index_forward=False, limit=n)]

    def active(self, agent_id: str, limit: int) -> list[Session]:
        """The agent's unfinished runs (QUEUED, RETRYING, RUNNING), newest first, at most ``limit``."""
        cond = SessionModel.status.is_in(*[x.value for x in (SessionStatus.QUEUED, SessionStatus.RETRYING,
                                                               SessionStatus.RUNNING)])
        out: list[Session] = []
        with aws_call("list unfinished sessions"):
            for m in SessionModel.query(agent_id, filter_condition=cond, scan_index_forward=False):
                out.append(session_from_item(m))
                if len(out) >= limit:
                    break
        return out

    def save(self, s: Session, *, expect_status: Iterable[SessionStatus] | None = None,
             expect_attempt: int | None = None) -> None:
        cond = SessionModel.session_id.exists()
        if expect_status is not None:
            cond = cond & SessionModel.status.is_in(*[x.value for x in expect_status])
        if expect_attempt is not None:
            cond = cond & (SessionModel.attempt == expect_attempt)
        with aws_call("update session"):
            self.item(s).save(condition=cond)

    def delete_agent_sessions(self, agent_id: str) -> int:
        n = 0
        with aws_call("delete sessions"):
            with SessionModel.batch_write() as batch:
                for m in SessionModel.query(agent_id, attributes_to_get=["agent_id", "session_id"]):
                    batch.delete(m)
                    n += 1
        return n

    def count_holding(self, slot_shard: str, tenant_id: str | None) -> tuple[int, int]:
        """(running, admitted) runs holding slots of one slot shard."""
        cond = (SessionModel.tenant_id == tenant_id) if tenant_id else None
        running = admitted = 0
        with aws_call("count slot holders"):
            for m in SessionModel.active_index.query(slot_shard, filter_condition=cond,
                                                      attributes_to_get=["status"]):
                if m.status == SessionStatus.RUNNING.value:
                    running += 1
                else:
                    admitted += 1
        return running, admitted

    def count_pending(self, shard: str, tenant_id: str | None) -> dict[str, int]:
        counts: dict[str, int] = {}
        cond = (SessionModel.tenant_id == tenant_id) if tenant_id else None
        with aws_call("count pending runs"):
            for m in SessionModel.pending_index.query(shard, filter_condition=cond):
                counts[m.priority] = counts.get(m.priority, 0) + 1
        return counts

    def list_dlq(self, tenant_id: str | None, limit: int, token: str | None) -> tuple[list[Session], str | None]:
        with aws_call("list dead runs"):
            if tenant_id is None:  # admin: every tenant; the index is sparse
                start = decode_token(token, "dlq_tenant", None, DLQ_KEY)
                it = SessionModel.dlq_index.scan(limit=limit, last_evaluated_key=start)
            else:
                start = decode_token(token, "dlq_tenant", tenant_id, DLQ_KEY)
                it = SessionModel.dlq_index.query(tenant_id, limit=limit, last_evaluated_key=start,
                                                  scan_index_forward=False)
            items = [m for m in it]
            return [self._dlq_entry(m) for m in items], encode_token(it.last_evaluated_key)

    def count_dlq(self, tenant_id: str | None) -> int:
        with aws_call("count dead runs"):
            if tenant_id is None:  # every tenant: the index is sparse, so a scan reads only dead runs
                return sum(1 for _ in SessionModel.dlq_index.scan(attributes_to_get=["agent_id"]))
            return SessionModel.dlq_index.count(tenant_id)

    @staticmethod
    def _dlq_entry(m: SessionModel) -> Session:
        return Session(
            agent_id=m.agent_id, session_id=m.session_id, tenant_id=m.tenant_id,
            status=SessionStatus(m.status or "DEAD"), trigger=Trigger(m.trigger or "SCHEDULE"),
            priority=Priority.NORMAL, scheduled_for=0.0, queued_at=0.0, max_attempts=0, timeout_seconds=0,
            attempt=int(m.attempt or 0), error=m.error, failed_at=_f(m.failed_at), in_dlq=True,
        )


# --- control: scheduler state ------------------------------------------------------
STATE = "STATE"


@dataclass(frozen=True)
class SchedulerState:
    paused: bool
    last_tick_at: float | None
    pauses: tuple[tuple[float, float | None], ...]


class ControlStore:
    def state(self) -> SchedulerState:
        with aws_call("read scheduler state"):
            try:
                m = ControlModel.get(STATE, consistent_read=True)
            except ControlModel.DoesNotExist:
                return SchedulerState(False, None, ())
        pauses = tuple((float(p[0]), None if p[1] is None else float(p[1])) for p in (m.pauses or []))
        return SchedulerState(bool(m.paused), _f(m.last_tick_at), pauses)

    def set_paused(self, paused: bool, pauses: Sequence) -> None:
        c = ControlModel
        with aws_call("pause/resume"):
            c(STATE).update(actions=[c.paused.set(paused), c.pauses.set([list(p) for p in pauses])])

    def set_last_tick(self, at: float) -> None:
        c = ControlModel
        with aws_call("record tick"):
            c(STATE).update(actions=[c.last_tick_at.set(at)])


# --- connections ------------------------------------------------------------------
class ConnectionStore:
    def __init__(self, ttl_seconds: int = 7200) -> None:
        self.ttl = ttl_seconds

    def add(self, connection_id: str, tenant_id: str, now: float) -> None:
        with aws_call("store connection"):
            ConnectionModel(
                connection_id, tenant_id=tenant_id, subscriptions=[], connected_at=now,
                expires_at=_ttl(now + self.ttl),
            ).save()

    def get(self, connection_id: str) -> ConnectionModel | None:
        with aws_call("get connection"):
            try:
                return ConnectionModel.get(connection_id)
            except ConnectionModel.DoesNotExist:
                return None

    def set_subscriptions(self, connection_id: str, subs: list[str]) -> None:
        c = ConnectionModel
        with aws_call("subscribe"):
            c(connection_id).update(actions=[c.subscriptions.set(subs)], condition=c.connection_id.exists())

    def remove(self, connection_id: str) -> None:
        with aws_call("remove connection"):
            ConnectionModel(connection_id).delete()

    def all_connections(self) -> list[tuple[str, str]]:
        with aws_call("list connections"):
            return [
                (m.connection_id, m.tenant_id)
                for m in ConnectionModel.scan(attributes_to_get=["connection_id", "tenant_id"])
            ]

    def of_tenant(self, tenant_id: str) -> list[tuple[str, list[str]]]:
        with aws_call("list connections"):
            return [
                (m.connection_id, list(m.subscriptions or []))
                for m in ConnectionModel.tenant_index.query(tenant_id)
            ]

