"""Schedule history in DynamoDB, written in the same transaction as the schedule change.

History items live in the agents table, each agent's in a partition of its own
(``tenant_id`` = ``#history#<agent id>``; a tenant id never holds ``#``, so no
tenant's Query ever meets them) sorted by version (``agent_id`` = ``v`` + the
version, zero-padded): newest first is one Query. The agent item carries
``schedule_version``; a schedule write and its history item are one
``TransactWriteItems`` conditioned on that version (and on whatever the write's own
condition is), so a write that loses a race records nothing, and a version that is
recorded is one that took effect.
"""
from __future__ import annotations

import hashlib

from pynamodb.attributes import JSONAttribute, NumberAttribute, UnicodeAttribute
from pynamodb.exceptions import TransactWriteError
from pynamodb.models import Model
from pynamodb.transactions import TransactWrite

from chalicelib.adapters.dynamo import AgentStore, decode_token, encode_token, forget_agent
from chalicelib.adapters.errors import aws_call, translate
from chalicelib.adapters.tables import AgentTenantModel
from chalicelib.domain.history import HistoryAction, HistoryEntry
from chalicelib.domain.records import Agent
from chalicelib.errors import ConditionFailed

PREFIX = "#history#"
_KEY_SHAPE = {"tenant_id": "S", "agent_id": "S"}


def history_pk(agent_id: str) -> str:
    return PREFIX + agent_id


def version_key(version: int) -> str:
    return f"v{version:012d}"


class ScheduleHistoryModel(Model):
    """One schedule version. Same table (and key attribute names) as ``AgentTenantModel``."""

    class Meta:
        table_name = "agent-scheduler-agents"

    pk = UnicodeAttribute(hash_key=True, attr_name="tenant_id")
    sk = UnicodeAttribute(range_key=True, attr_name="agent_id")
    owner = UnicodeAttribute(attr_name="history_tenant")
    version = NumberAttribute(attr_name="history_version")
    changed_at = NumberAttribute(attr_name="changed_at")
    changed_by = UnicodeAttribute(attr_name="changed_by")
    action = UnicodeAttribute(attr_name="history_action")
    schedule = JSONAttribute(attr_name="history_schedule", null=True)


def bind(settings) -> None:
    m = ScheduleHistoryModel
    m.Meta.table_name = settings.agents_table
    m.Meta.region = settings.region
    m.Meta.host = settings.aws_endpoint_url
    m._connection = None


class HistoryStore:
    def __init__(self, settings) -> None:
        bind(settings)

    def save_with_history(self, agent: Agent, entry: HistoryEntry, *, expected_version: int, due_shard, due_at,
                          must_exist: bool, expect_next_run_at=None, check_next_run_at: bool = False) -> None:
        """The agent's write (as ``AgentStore.save``) plus the version bump and the history item,
        all or nothing. ConditionFailed: someone changed the agent meanwhile (read again)."""
        a = AgentTenantModel
        forget_agent(agent.tenant_id, agent.agent_id)
        item, actions, cond = AgentStore.save_request(
            agent, due_shard=due_shard, due_at=due_at, must_exist=must_exist,
            expect_next_run_at=expect_next_run_at, check_next_run_at=check_next_run_at,
        )
        same_version = _same_version(expected_version)
        cond = same_version if cond is None else cond & same_version
        actions = actions + [a.schedule_version.set(entry.version)]
        h = ScheduleHistoryModel(
            history_pk(entry.agent_id), version_key(entry.version),
            owner=entry.tenant_id, version=entry.version, changed_at=entry.changed_at,
            changed_by=entry.changed_by, action=entry.action.value, schedule=entry.schedule,
        )
        token = hashlib.sha256(f"{entry.agent_id}\x1f{entry.version}\x1f{entry.changed_at!r}".encode()).hexdigest()[:36]
        try:
            with TransactWrite(connection=a._get_connection().connection, client_request_token=token) as tw:
                tw.update(item, actions=actions, condition=cond)
                tw.save(h, condition=ScheduleHistoryModel.sk.does_not_exist())
        except TransactWriteError as exc:
            reasons = exc.cancellation_reasons or []
            if any(r is not None and getattr(r, "code", None) == "ConditionalCheckFailed" for r in reasons):
                raise ConditionFailed("save schedule: another writer got there first") from exc
            raise translate(exc, "save schedule") from exc

    def save_at_version(self, agent: Agent, *, expected_version: int, due_shard, due_at, must_exist: bool,
                        expect_next_run_at=None, check_next_run_at: bool = False) -> None:
        """The agent's write (schedule unchanged) under the condition that no schedule change
        landed since it was read, so it never writes back an older schedule."""
        forget_agent(agent.tenant_id, agent.agent_id)
        item, actions, cond = AgentStore.save_request(
            agent, due_shard=due_shard, due_at=due_at, must_exist=must_exist,
            expect_next_run_at=expect_next_run_at, check_next_run_at=check_next_run_at,
        )
        cond = _same_version(expected_version) if cond is None else cond & _same_version(expected_version)
        with aws_call("update agent"):
            item.update(actions=actions, condition=cond)

    def list(self, agent_id: str, limit: int, token: str | None) -> tuple[list[HistoryEntry], str | None]:
        pk = history_pk(agent_id)
        start = decode_token(token, "tenant_id", pk, _KEY_SHAPE)
        with aws_call("read schedule history"):
            it = ScheduleHistoryModel.query(pk, scan_index_forward=False, limit=limit, last_evaluated_key=start)
            items = [_entry(agent_id, m) for m in it]
            return items, encode_token(it.last_evaluated_key)

    def delete_all(self, agent_id: str) -> int:
        """Remove an agent's history (the agent is gone). Returns how many versions."""
        pk = history_pk(agent_id)
        n = 0
        with aws_call("delete schedule history"):
            # DeleteItem one by one (no BatchWriteItem grant needed; a history is short)
            for m in ScheduleHistoryModel.query(pk, attributes_to_get=["tenant_id", "agent_id"]):
                m.delete()
                n += 1
        return n


def _same_version(expected: int):
    a = AgentTenantModel
    if expected == 0:
        return a.schedule_version.does_not_exist() | (a.schedule_version == 0)
    return a.schedule_version == expected


def _entry(agent_id: str, m: ScheduleHistoryModel) -> HistoryEntry:
    return HistoryEntry(
        agent_id=agent_id, tenant_id=m.owner, version=int(m.version), changed_at=float(m.changed_at),
        changed_by=m.changed_by, action=HistoryAction(m.action), schedule=m.schedule or {},
    )
