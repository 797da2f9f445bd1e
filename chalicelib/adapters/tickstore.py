"""The tick's schedule writes: each due schedule's advance with the sessions it creates.

A schedule's advance and its new sessions land in one transaction (at most
``MAX_ITEMS_PER_SCHEDULE`` + 1 items, far below DynamoDB's limit of 100), so a
fire is created exactly once whichever tick writes it. Small schedules share a
transaction; a transaction that fails for another reason than a lost race is
split, so one bad schedule is logged and counted and the others go on.
"""
from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass, field, replace

from chalicelib.adapters.dynamo import session_to_item
from chalicelib.adapters.errors import aws_call
from chalicelib.adapters.tables import AgentTenantModel, SessionModel
from chalicelib.adapters.transact import TRANSACTION_LIMIT, Tx, request_token
from chalicelib.domain.model import SessionStatus
from chalicelib.domain.tickplan import SchedulePlan
from chalicelib.errors import StorageError

log = logging.getLogger("agent_scheduler.tick")


@dataclass
class CommitReport:
    committed: list[SchedulePlan] = field(default_factory=list)
    lost: list[SchedulePlan] = field(default_factory=list)  # another tick advanced it first
    failed: list[SchedulePlan] = field(default_factory=list)  # could not be written: next tick tries again
    existing: int = 0  # sessions an interrupted earlier tick had already written
    transactions: int = 0


class TickWriter:
    def __init__(self, pending_shards: int, retention_days: int) -> None:
        self.pending_shards = pending_shards
        self.retention = retention_days * 86400

    def commit(self, plans: list[SchedulePlan], now: float) -> CommitReport:
        self.nonce = f"{now}:{uuid.uuid4().hex}"  # this tick's: retries of its writes reuse it
        report = CommitReport()
        batch: list[SchedulePlan] = []
        for p in plans:
            if sum(len(x) for x in batch) + len(p) > TRANSACTION_LIMIT:
                self._commit_batch(batch, report)
                batch = []
            batch.append(p)
        if batch:
            self._commit_batch(batch, report)
        return report

    def _commit_batch(self, batch: list[SchedulePlan], report: CommitReport) -> None:
        todo = list(batch)
        for _ in range(4):  # each round drops what lost its race
            if not todo:
                return
            token = request_token("tick", self.nonce, *[(p.key, p.advance.expect_next_run_at, len(p.sessions)) for p in todo])
            tx = self._tx(todo, token)
            try:
                report.transactions += 1
                res = tx.commit("commit tick")
            except StorageError as exc:
                if len(todo) > 1:  # find the one that cannot be written; the others go on
                    for p in todo:
                        self._commit_batch([p], report)
                    return
                if exc.retryable:
                    report.failed.extend(todo)
                    return
                log.error("schedule could not be written", extra={"agent_id": todo[0].key, "error": str(exc)})
                report.failed.extend(todo)
                return
            if res.ok or self._was_mine(todo[0], token):
                report.committed.extend(todo)
                return
            failed = set(res.failed)
            lost = [p for p in todo if "advance:" + p.key in failed]
            report.lost.extend(lost)
            keep = []
            for p in todo:
                if p in lost:
                    continue
                sessions = tuple(s for s in p.sessions if s.session_id not in failed)
                report.existing += len(p.sessions) - len(sessions)
                if len(sessions) != len(p.sessions):  # count only the runs really created
                    runs = sum(1 for s in sessions if s.status is SessionStatus.QUEUED)
                    p = SchedulePlan(replace(p.advance, add_active=runs), sessions)
                keep.append(p)
            todo = keep
        report.failed.extend(todo)

    def _tx(self, plans: list[SchedulePlan], token: str) -> Tx:
        tx = Tx(token)
        a = AgentTenantModel
        for p in plans:
            adv = p.advance
            if adv.next_run_at is None:
                actions = [a.next_run_at.remove(), a.due_shard.remove(), a.due_at.remove()]
            else:
                actions = [a.next_run_at.set(adv.next_run_at), a.due_at.set(adv.next_due_at)]
            if adv.add_active:
                actions.append(a.active_runs.add(adv.add_active))
            actions.append(a.plan_token.set(token))
            cond = (a.next_run_at == adv.expect_next_run_at) if adv.expect_next_run_at is not None \
                else a.next_run_at.does_not_exist()
            tx.update("advance:" + p.key, a(adv.tenant_id, adv.agent_id), actions, cond)
            for s in p.sessions:
                item = session_to_item(s.with_(tx=token), shards=self.pending_shards,
                                       expires_at=(s.finished_at or s.queued_at) + self.retention)
                tx.save(s.session_id, item, SessionModel.session_id.does_not_exist())
        return tx

    def _was_mine(self, plan: SchedulePlan, token: str) -> bool:
        with aws_call("read schedule"):
            try:
                m = AgentTenantModel.get(plan.advance.tenant_id, plan.advance.agent_id, consistent_read=True)
            except AgentTenantModel.DoesNotExist:
                return False
        return m.plan_token == token
