"""The run path's writes: slot counters and the session transitions that hold slots.

Each transition is one request: a conditional UpdateItem, or one transaction
when a slot counter (or the agent's run counts) must change with the session.
Every write stamps its token on the session (``tx``, or ``claim`` for a
claim), so a write that committed and then reported failure is recognised on
read-back ("was it me?") and never mistaken for a lost race.
"""
from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from typing import Iterable, Mapping, Sequence

from chalicelib.adapters.dynamo import session_from_item
from chalicelib.adapters.errors import aws_call, translate
from chalicelib.adapters.tables import AgentTenantModel, ControlModel, SessionModel
from chalicelib.adapters.transact import Tx, request_token
from chalicelib.domain.admission import Admit, SlotShard, handoff_changes, slot_limits
from chalicelib.domain.budget import BudgetCharge, DayUsage
from chalicelib.domain.ids import pending_rank, pending_shard
from chalicelib.domain.model import SessionStatus
from chalicelib.domain.records import STAGE_ADMITTED, STAGE_PENDING, Session
from chalicelib.domain.runflow import Next, Transition
from chalicelib.errors import ConditionFailed, WaitingHint

log = logging.getLogger("agent_scheduler.runstore")

STATE = "STATE"
SLOTS = "SLOTS#"
BUDGET = "BUDGET#"


def slot_key(shard: str) -> str:
    return SLOTS + shard


def budget_key(tenant_id: str, agent_id: str, day: str) -> str:
    return f"{BUDGET}{tenant_id}#{agent_id}#{day}"


@dataclass(frozen=True)
class ClaimResult:
    ok: bool
    session: Session | None  # as stored after the attempt to claim


@dataclass(frozen=True)
class FinishResult:
    ok: bool  # False: the attempt no longer owned the run (superseded or cancelled first)
    handed_off: Session | None = None  # the waiting run that took over the slot
    applied: Transition | None = None  # what was written (a cancel can turn a retry into CANCELLED)
    kept: bool = False  # the retry kept its slot (ADMITTED for its next attempt)


class RunStore:
    def __init__(self, pending_shards: int, retention_days: int) -> None:
        self.pending_shards = pending_shards
        self.retention = retention_days * 86400

    # --- reading ------------------------------------------------------------------
    def get(self, agent_id: str, session_id: str) -> Session | None:
        with aws_call("get session"):
            try:
                return session_from_item(SessionModel.get(agent_id, session_id, consistent_read=True))
            except SessionModel.DoesNotExist:
                return None

    def slots(self, cap: int) -> list[SlotShard]:
        """The slot counters of ``cap`` (one BatchGetItem); a counter never written is empty."""
        limits = slot_limits(cap)
        with aws_call("read slot counters"):
            items = {m.pk: m for m in ControlModel.batch_get([slot_key(n) for n, _ in limits])}
        out = []
        for name, limit in limits:
            m = items.get(slot_key(name))
            audit = (int(m.audit[0]), int(m.audit[1])) if m is not None and m.audit else None
            out.append(SlotShard(name, int(m.used or 0) if m else 0, limit, waiting=bool(m and m.waiting), audit=audit))
        return out

    def pending(self, *, want: int, eligible_until: float) -> list[Session]:
        """The first waiting runs of each pending shard, until ``want`` of them are eligible."""
        out: list[Session] = []
        with aws_call("query pending runs"):
            for n in range(self.pending_shards):
                eligible = 0
                for m in SessionModel.pending_index.query(f"p{n:03d}", page_size=max(want * 2, 10)):
                    s = session_from_item(m)
                    out.append(s)
                    if s.eligible_at <= eligible_until:
                        eligible += 1
                        if eligible >= want:
                            break
        return out

    def oldest_pending(self, priority_rank: int, per_shard: int) -> list[Session]:
        """The oldest waiting live runs of one stored priority, at most ``per_shard`` of each
        pending shard (live runs sort before the backfill lane of their priority)."""
        out: list[Session] = []
        with aws_call("query oldest pending runs of a priority"):
            for n in range(self.pending_shards):
                for m in SessionModel.pending_index.query(
                        f"p{n:03d}", SessionModel.pending_rank.startswith(f"{priority_rank}#"), limit=per_shard):
                    out.append(session_from_item(m))
        return out

    def expired(self, shard: str, now: float, limit: int) -> list[Session]:
        """Runs of one slot shard whose lease has passed (oldest first), at most ``limit``."""
        with aws_call("query expired leases"):
            return [session_from_item(m) for m in SessionModel.active_index.query(
                shard, SessionModel.run_lease_until < now, limit=limit)]

    def held_keys(self, shard: str) -> dict[str, int]:
        """How many runs holding slots of ``shard`` hold each keyed counter."""
        out: dict[str, int] = {}
        with aws_call("count keyed holders"):
            for m in SessionModel.active_index.query(shard, attributes_to_get=["holds"]):
                for k in m.holds or ():
                    out[k] = out.get(k, 0) + 1
        return out

    def holders(self, shard: str) -> int:
        with aws_call("count slot holders"):
            return SessionModel.active_index.count(shard)

    # --- slot counters ------------------------------------------------------------
    def set_waiting(self, shards: Iterable[str], waiting: bool) -> None:
        """The 'runs are waiting for a slot' hint on the counters (read by finishing workers)."""
        c = ControlModel
        for shard in shards:
            with aws_call("set waiting hint"):
                c(slot_key(shard)).update(actions=[c.waiting.set(True) if waiting else c.waiting.remove()])

    def repair(self, shard: str, expect_used: int, holders: int) -> bool:
        """Set a counter to the number of sessions holding its slots, if it did not move."""
        c = ControlModel
        with aws_call("repair slot counter"):
            try:
                c(slot_key(shard)).update(actions=[c.used.set(holders), c.audit.remove()],
                                          condition=c.used == expect_used)
                return True
            except Exception as exc:
                if isinstance(translate(exc, "repair"), ConditionFailed):
                    return False
                raise

    def note_audit(self, shard: str, seen: list[int] | None) -> None:
        c = ControlModel
        with aws_call("note counter audit"):
            c(slot_key(shard)).update(actions=[c.audit.set(seen) if seen else c.audit.remove()])

    # --- admission: PENDING -> ADMITTED, one slot each ---------------------------------
    def admit(self, shard: SlotShard, admits: Sequence[Admit], sessions: dict[str, Session],
              now: float, key_limits: Mapping[str, int] | None = None,
              key_expiry: Mapping[str, float] | None = None) -> tuple[list[Admit], list[str]]:
        """Take ``len(admits)`` slots of ``shard`` and mark those runs ADMITTED, all or nothing.

        Returns (admitted, gone): ``gone`` are runs another admitter (or a cancel) moved first;
        the others are retried without them. A full counter admits nothing (another admitter
        took the slots: the caller re-plans).
        """
        todo = list(admits)
        nonce = uuid.uuid4().hex  # this admitter's: its own retries reuse it, another admitter's differ
        while todo:
            token = request_token("admit", nonce, now, shard.name, *[a.candidate.session_id for a in todo])
            tx = Tx(token)
            c = ControlModel
            n = len(todo)
            tx.update("counter", c(slot_key(shard.name)), [c.used.add(n)],
                      c.used.does_not_exist() | (c.used <= shard.limit - n))
            take: dict[str, int] = {}
            for a in todo:
                for k in a.holds + a.starts:
                    take[k] = take.get(k, 0) + 1
            for k, k_n in sorted(take.items()):
                _take_key(tx, k, k_n, (key_limits or {})[k], (key_expiry or {}).get(k))
            for a in todo:
                s = sessions[a.candidate.session_id]
                m = SessionModel
                tx.update(s.session_id, m(s.agent_id, s.session_id), [
                    m.stage.set(STAGE_ADMITTED), m.admitted_at.set(now), m.slot.set(shard.name),
                    m.run_lease_until.set(a.lease_until), m.tx.set(token),
                    m.pending_shard.remove(), m.pending_rank.remove(),
                    m.holds.set(list(a.holds)) if a.holds else m.holds.remove(),
                    m.waiting_reason.remove(), m.waiting_for.remove(),
                ], (m.stage == STAGE_PENDING) & (m.attempt == s.attempt) & (m.cancel_requested.does_not_exist()))
            res = tx.commit("admit runs")
            if res.ok:
                return todo, []
            if "counter" in res.failed or any(f.startswith(KEY_OP) for f in res.failed):
                return [], []  # another admitter took the slots (or a keyed limit's room) first
            gone = set(res.failed)
            mine = self._written_by(todo, sessions, token)
            if mine:  # an earlier try of this very transaction committed
                return todo, []
            todo = [a for a in todo if a.candidate.session_id not in gone]
            if not todo:
                return [], sorted(gone)
        return [], []

    def _written_by(self, admits: Sequence[Admit], sessions: dict[str, Session], token: str) -> bool:
        first = sessions[admits[0].candidate.session_id]
        now_s = self.get(first.agent_id, first.session_id)
        return now_s is not None and now_s.tx == token

    # --- the claim: ADMITTED -> RUNNING -----------------------------------------------
    def claim(self, agent_id: str, session_id: str, attempt: int, token: str, now: float,
              lease_until: float, callback_hash: str | None = None) -> ClaimResult:
        """ADMITTED -> RUNNING for ``attempt``, stamped with ``token``; one UpdateItem that
        returns the run. When the condition fails, the stored run tells whether the claim was
        ours after all (a retried write that had committed) or why not.

        ``callback_hash``: the hash of this attempt's callback token, stored by the same write;
        the previous attempt's hash moves to ``prev_callback_hash`` (its late calls are told
        that it ended), and the attempt starts synchronous."""
        m = SessionModel
        item = m(agent_id, session_id)
        actions = [
            m.status.set(SessionStatus.RUNNING.value), m.attempt.set(attempt), m.started_at.set(now),
            m.run_lease_until.set(lease_until), m.claim.set(token), m.stage.remove(), m.next_attempt_at.remove(),
            m.finished_at.remove(),
        ]
        if callback_hash is not None:
            actions += [m.prev_callback_hash.set(m.callback_hash | "-"), m.callback_hash.set(callback_hash),
                        m.is_async.remove(), m.heartbeat_seconds.remove()]
        cond = (m.stage == STAGE_ADMITTED) & (m.attempt == attempt - 1) & m.slot.exists() \
            & m.cancel_requested.does_not_exist()
        try:
            with aws_call("claim run"):
                item.update(actions=actions, condition=cond)
            return ClaimResult(True, session_from_item(item))
        except ConditionFailed:
            now_s = self.get(agent_id, session_id)
            mine = (now_s is not None and now_s.status is SessionStatus.RUNNING
                    and now_s.claim == token and now_s.attempt == attempt)
            return ClaimResult(mine, now_s)

    # --- the end of an attempt ------------------------------------------------------------
    def finish(self, s: Session, t: Transition, now: float, duration_ms: int | None,
               hand_off: tuple[Session, Admit] | None = None, count_agent: bool = True,
               release_if_idle: bool = False, keep: Admit | None = None,
               key_limits: Mapping[str, int] | None = None, key_expiry: Mapping[str, float] | None = None,
               skip_keys: frozenset[str] = frozenset(), *, ended_by: str | None = None,
               end_hash: str | None = None, usage: dict | None = None, tx_nonce: str = "",
               expect_lease: float | None = None, charge: BudgetCharge | None = None) -> FinishResult:
        """One transaction: the session's outcome, its slot released (or handed to
        ``hand_off``, which becomes ADMITTED in its place), the agent's run counts.

        ``release_if_idle``: release only while no run is waiting (the counter's hint is
        off); raises ``WaitingHint`` otherwise, so the caller looks for a run to hand off to.
        ``keep``: a retry that keeps its slot (ADMITTED again for its next attempt), only
        while no run is waiting; raises ``WaitingHint`` otherwise.

        Keyed counters: the run gives back every key it holds (``s.holds``); a hand-off gives
        back only those the next run does not hold and takes (conditionally, under
        ``key_limits``) those it holds and the finishing run did not, plus the next run's
        throttle starts; a keyed limit that has no room cancels the hand-off (the slot is
        released instead and admission decides). A kept retry keeps its keys.
        ``skip_keys``: keys already repaired below this run's hold (not given back again).
        ``ended_by`` (default: from the transition), ``end_hash``: how the attempt ended, for
        its late callbacks; ``usage``: what the agent reported it used. ``tx_nonce``: the
        caller's own (a callback request's), so two callers ending the attempt the same way
        never take each other's write for their own. ``expect_lease``: only while the run's
        lease is still the one the caller saw expire (a callback that moved it keeps the run).
        ``charge``: what the attempt adds to its agent's budget day (one more small item,
        an ADD, in the same transaction).
        """
        from chalicelib.domain.callbacks import ended_by_for

        cb = dict(ended_by=ended_by or ended_by_for(t.next.value, category=(t.error or {}).get("category")).value,
                  end_hash=end_hash, usage=usage, expect_lease=expect_lease, charge=charge)
        token = request_token("finish", s.session_id, s.attempt, s.claim, t.next.value,
                              hand_off[0].session_id if hand_off else "", "keep" if keep else "",
                              *([tx_nonce] if tx_nonce else []))
        tx = self._finish_tx(s, t, now, duration_ms, token, hand_off, count_agent, release_if_idle, keep=keep, **cb)
        if keep is None and s.slot:
            _key_changes(tx, s, hand_off, key_limits, key_expiry, skip_keys)
        res = tx.commit("finish run")
        done = FinishResult(True, hand_off[0] if hand_off else None, t, keep is not None)
        if res.ok:
            return done
        current = self.get(s.agent_id, s.session_id)
        if current is not None and current.tx == token:
            return done
        if keep is not None and "hint" in res.failed and "session" not in res.failed:
            raise WaitingHint("runs wait for a slot")
        lost_keys = {f[len(KEY_OP):] for f in res.failed if f.startswith(KEY_OP)}
        if lost_keys and "session" not in res.failed:
            if hand_off is not None and lost_keys & set(hand_off[1].holds + hand_off[1].starts):
                # the next run's keyed limit has no room: release instead; admission decides
                return self.finish(s, t, now, duration_ms, None, count_agent, False, skip_keys=skip_keys,
                                   tx_nonce=tx_nonce, **cb)
            log.warning("keyed counter already released", extra={"session_id": s.session_id})
            return self.finish(s, t, now, duration_ms, hand_off, count_agent, release_if_idle, keep,
                               key_limits, key_expiry, skip_keys | frozenset(lost_keys), tx_nonce=tx_nonce, **cb)
        if "session" in res.failed:
            if current is not None and current.cancel_requested and t.next is Next.RETRY \
                    and current.status is SessionStatus.RUNNING and current.claim == s.claim:
                # a cancel arrived while the attempt ran: it ends the run instead of a retry
                cancelled = Transition(Next.CANCELLED, error={"category": "CANCELLED", "message": "cancelled on request"},
                                       output=t.output)
                return self.finish(s.with_(cancel_requested=True), cancelled, now, duration_ms,
                                   hand_off, count_agent, release_if_idle, key_limits=key_limits,
                                   key_expiry=key_expiry, skip_keys=skip_keys, ended_by="CANCELLED", usage=usage,
                                   tx_nonce=tx_nonce, charge=charge)
            return FinishResult(False)
        if "agent" in res.failed:  # the agent was deleted meanwhile: nothing to count
            return self.finish(s, t, now, duration_ms, hand_off, False, release_if_idle,
                               key_limits=key_limits, key_expiry=key_expiry, skip_keys=skip_keys,
                               tx_nonce=tx_nonce, **cb)
        if "counter" in res.failed and release_if_idle:
            raise WaitingHint("runs wait for a slot")
        if "counter" in res.failed:  # the counter was repaired below this slot: nothing to give back
            log.warning("slot counter already released", extra={"session_id": s.session_id})
            return self._finish_without_counter(s, t, now, duration_ms, token, count_agent, **cb)
        if hand_off is not None:  # the next run moved meanwhile, or the scheduler is paused
            return self.finish(s, t, now, duration_ms, None, count_agent, False, skip_keys=skip_keys,
                               tx_nonce=tx_nonce, **cb)
        return FinishResult(False)

    def _finish_without_counter(self, s, t, now, duration_ms, token, count_agent, **cb) -> FinishResult:
        tx = self._finish_tx(s, t, now, duration_ms, token, None, count_agent, False, counter=False, **cb)
        _key_changes(tx, s, None, None, None, frozenset())
        res = tx.commit("finish run")
        return FinishResult(res.ok, None, t)

    def _finish_tx(self, s: Session, t: Transition, now: float, duration_ms: int | None, token: str,
                   hand_off, count_agent: bool, release_if_idle: bool, counter: bool = True,
                   keep: Admit | None = None, ended_by: str | None = None, end_hash: str | None = None,
                   usage: dict | None = None, expect_lease: float | None = None,
                   charge: BudgetCharge | None = None) -> Tx:
        m = SessionModel
        tx = Tx(token)
        actions = [m.status.set(t.next.status.value), m.tx.set(token), m.slot.remove(), m.run_lease_until.remove(),
                   m.claim.remove(), m.holds.remove()]
        if ended_by is not None:  # the attempt's end, as its late callbacks are told
            actions += [m.end_attempt.set(s.attempt), m.ended_by.set(ended_by),
                        m.end_hash.set(end_hash) if end_hash else m.end_hash.remove()]
        if t.next is Next.CANCELLED:
            actions.append(m.cancel_requested.set(True))
        actions.append(m.error.set(t.error) if t.error else m.error.remove())
        actions.append(m.output.set(t.output) if t.output is not None else m.output.remove())
        if duration_ms is not None:
            actions.append(m.duration_ms.set(duration_ms))
        usage = usage if usage is not None else t.usage  # a callback's report, or the answer's
        if usage is not None:
            actions.append(m.usage.set(usage))
        if t.rate_limited_wait:
            actions.append(m.rate_limited_waits.add(1))
        if t.final:
            actions += [m.finished_at.set(now), m.next_attempt_at.remove(), m.stage.remove(),
                        m.expires_at.set(_ttl(now + self.retention))]
            if t.next is Next.DEAD:
                actions += [m.dlq_tenant.set(s.tenant_id), m.failed_at.set(now)]
        elif keep is not None:
            actions = [a for a in actions if not _touches(a, ("slot", "run_lease_until", "holds"))]
            actions += [m.next_attempt_at.set(t.next_attempt_at), m.stage.set(STAGE_ADMITTED),
                        m.admitted_at.set(now), m.run_lease_until.set(keep.lease_until)]
        else:
            retry = s.with_(next_attempt_at=t.next_attempt_at)
            actions += [m.next_attempt_at.set(t.next_attempt_at), m.stage.set(STAGE_PENDING),
                        m.pending_shard.set(pending_shard(s.session_id, self.pending_shards)),
                        m.pending_rank.set(pending_rank(s.priority.rank, retry.eligible_at, s.session_id,
                                                        s.trigger.value == "BACKFILL"))]
        cond = (m.status == s.status.value) & (m.attempt == s.attempt)
        cond = cond & ((m.claim == s.claim) if s.claim else m.claim.does_not_exist())
        if t.next is Next.RETRY:
            cond = cond & m.cancel_requested.does_not_exist()
        if expect_lease is not None:
            cond = cond & (m.run_lease_until == expect_lease)
        tx.update("session", m(s.agent_id, s.session_id), actions, cond)
        c = ControlModel
        if keep is not None:
            tx.check("hint", c, slot_key(s.slot), None, c.waiting.does_not_exist())
        elif s.slot and counter:
            if hand_off is None:
                ccond = c.used >= 1
                if release_if_idle:
                    ccond = ccond & c.waiting.does_not_exist()
                tx.update("counter", c(slot_key(s.slot)), [c.used.add(-1)], ccond)
            else:
                nxt, admit = hand_off
                tx.update(nxt.session_id, m(nxt.agent_id, nxt.session_id), [
                    m.stage.set(STAGE_ADMITTED), m.admitted_at.set(now), m.slot.set(s.slot),
                    m.run_lease_until.set(admit.lease_until), m.tx.set(token),
                    m.pending_shard.remove(), m.pending_rank.remove(),
                    m.holds.set(list(admit.holds)) if admit.holds else m.holds.remove(),
                    m.waiting_reason.remove(), m.waiting_for.remove(),
                ], (m.stage == STAGE_PENDING) & (m.attempt == nxt.attempt) & m.cancel_requested.does_not_exist())
                tx.check("state", c, STATE, None, c.paused.does_not_exist() | (c.paused == False))  # noqa: E712
        if count_agent and t.final:
            a = AgentTenantModel
            agent_actions = [a.active_runs.add(-1)]
            if t.next is Next.SUCCEEDED:
                agent_actions += [a.consecutive_failures.set(0), a.alerted.set(False)]
            elif t.next is Next.DEAD:
                agent_actions += [a.consecutive_failures.add(1)]
            tx.update("agent", a(s.tenant_id, s.agent_id), agent_actions, a.agent_id.exists())
        if charge is not None:
            c = ControlModel
            tx.update("budget", c(budget_key(s.tenant_id, s.agent_id, charge.day)), [
                c.runs.add(charge.runs), c.runtime_seconds.add(round(charge.runtime_seconds, 3)),
                c.cost_usd.add(round(charge.cost_usd, 6)), c.expires_at.set(_ttl(charge.expires_at)),
            ])
        return tx

    def budget_usages(self, wanted: Sequence[tuple[str, str, str]]) -> dict[tuple[str, str], DayUsage]:
        """(tenant, agent) -> its counters for ``day``, for each (tenant, agent, day) in ``wanted``
        (BatchGetItem, 100 keys a request)."""
        keys = {budget_key(t, a, d): (t, a, d) for t, a, d in wanted}
        out = {(t, a): DayUsage(d) for t, a, d in keys.values()}
        if not keys:
            return out
        with aws_call("read budget days"):
            for m in ControlModel.batch_get(list(keys)):
                t, a, d = keys[m.pk]
                out[(t, a)] = DayUsage(d, int(m.runs or 0), float(m.runtime_seconds or 0), float(m.cost_usd or 0))
        return out

    def budget_usage(self, tenant_id: str, agent_id: str, day: str) -> DayUsage:
        """One agent's counters for one local day (zero when nothing ran that day)."""
        with aws_call("read budget day"):
            try:
                m = ControlModel.get(budget_key(tenant_id, agent_id, day), consistent_read=True)
            except ControlModel.DoesNotExist:
                return DayUsage(day)
        return DayUsage(day, int(m.runs or 0), float(m.runtime_seconds or 0), float(m.cost_usd or 0))

    def raise_alert_once(self, tenant_id: str, agent_id: str, threshold: int) -> bool:
        """True exactly once when the agent's consecutive failures reach ``threshold``."""
        a = AgentTenantModel
        with aws_call("raise alert"):
            try:
                a(tenant_id, agent_id).update(
                    actions=[a.alerted.set(True)],
                    condition=a.agent_id.exists() & (a.consecutive_failures >= threshold) & (a.alerted != True),  # noqa: E712
                )
                return True
            except Exception as exc:
                if isinstance(translate(exc, "raise alert"), ConditionFailed):
                    return False
                raise

    # --- recovery --------------------------------------------------------------------------
    def extend_lease(self, s: Session, lease_until: float) -> bool:
        """An ADMITTED run nobody claimed: keep its slot a while longer (it is sent again)."""
        m = SessionModel
        try:
            with aws_call("extend lease"):
                m(s.agent_id, s.session_id).update(
                    actions=[m.run_lease_until.set(lease_until)],
                    condition=(m.stage == STAGE_ADMITTED) & (m.attempt == s.attempt) & (m.run_lease_until == s.run_lease_until),
                )
            return True
        except ConditionFailed:
            return False

    def cancel_waiting(self, s: Session, now: float) -> bool:
        """QUEUED/RETRYING (waiting or admitted, not running) -> CANCELLED, its slot released."""
        return self.end_waiting(s, now, SessionStatus.CANCELLED)

    def end_waiting(self, s: Session, now: float, status: SessionStatus, skip_reason: str | None = None) -> bool:
        """A run that is not running (waiting or admitted) ends CANCELLED or SKIPPED, its slot
        released and the agent's active count lowered, in one transaction."""
        token = request_token("end", s.session_id, s.attempt, s.stage, status.value)
        m = SessionModel
        tx = Tx(token)
        actions = [m.status.set(status.value), m.tx.set(token), m.finished_at.set(now),
                   m.stage.remove(), m.slot.remove(), m.run_lease_until.remove(),
                   m.next_attempt_at.remove(), m.pending_shard.remove(), m.pending_rank.remove(),
                   m.expires_at.set(_ttl(now + self.retention)), m.holds.remove(), m.waiting_reason.remove(),
                   m.waiting_for.remove()]
        if status is SessionStatus.CANCELLED:
            actions += [m.cancel_requested.set(True),
                        m.error.set({"category": "CANCELLED", "message": "cancelled on request"})]
        if skip_reason:
            actions.append(m.skip_reason.set(skip_reason))
        cond = (m.status == s.status.value) & (m.attempt == s.attempt)
        cond = cond & ((m.stage == s.stage) if s.stage else m.stage.does_not_exist())
        tx.update("session", m(s.agent_id, s.session_id), actions, cond)
        if s.slot:
            c = ControlModel
            tx.update("counter", c(slot_key(s.slot)), [c.used.add(-1)], c.used >= 1)
            _key_changes(tx, s, None, None, None, frozenset())
        a = AgentTenantModel
        tx.update("agent", a(s.tenant_id, s.agent_id), [a.active_runs.add(-1)], a.agent_id.exists())
        res = tx.commit("cancel run")
        if res.ok:
            return True
        current = self.get(s.agent_id, s.session_id)
        return current is not None and current.tx == token

    def redrive(self, dead: Session, fresh: Session) -> bool:
        """One transaction: the dead run stays DEAD, gains ``redriven_to`` and leaves the DLQ list;
        the new REDRIVE run is created waiting for a slot; the agent counts one more active run."""
        from chalicelib.adapters.dynamo import session_to_item

        token = request_token("redrive", dead.session_id, fresh.session_id)
        m = SessionModel
        tx = Tx(token)
        tx.update("dead", m(dead.agent_id, dead.session_id),
                  [m.redriven_to.set(fresh.session_id), m.dlq_tenant.remove(), m.tx.set(token)],
                  (m.status == SessionStatus.DEAD.value) & m.redriven_to.does_not_exist())
        item = session_to_item(fresh.with_(tx=token), shards=self.pending_shards,
                               expires_at=fresh.queued_at + self.retention)
        tx.save("fresh", item, m.session_id.does_not_exist())
        a = AgentTenantModel
        tx.update("agent", a(dead.tenant_id, dead.agent_id), [a.active_runs.add(1)], a.agent_id.exists())
        res = tx.commit("redrive")
        if res.ok:
            return True
        current = self.get(dead.agent_id, dead.session_id)
        return current is not None and current.tx == token

    def set_waiting_reason(self, s: Session, reason: str | None, waiting_for: str | None) -> bool:
        """What holds a waiting run back (a keyed limit), written only when it changed."""
        m = SessionModel
        actions = [m.waiting_reason.set(reason) if reason else m.waiting_reason.remove(),
                   m.waiting_for.set(waiting_for) if waiting_for else m.waiting_for.remove()]
        try:
            with aws_call("note waiting reason"):
                m(s.agent_id, s.session_id).update(
                    actions=actions, condition=(m.stage == STAGE_PENDING) & (m.attempt == s.attempt))
            return True
        except ConditionFailed:
            return False  # admitted or ended meanwhile

    def request_cancel(self, s: Session) -> bool:
        """A RUNNING run: flag it; its worker stops it and the flag forbids a retry."""
        m = SessionModel
        try:
            with aws_call("request cancel"):
                m(s.agent_id, s.session_id).update(
                    actions=[m.cancel_requested.set(True)],
                    condition=(m.status == SessionStatus.RUNNING.value) & (m.attempt == s.attempt)
                    & m.is_async.does_not_exist(),
                )
            return True
        except ConditionFailed:
            return False

    # --- async attempts and their callbacks -------------------------------------------------
    def accept(self, s: Session, lease_until: float, heartbeat_seconds: int | None) -> Session | None:
        """The agent took attempt ``s.attempt`` asynchronously: the run stays RUNNING, marked
        async, its lease now the heartbeat/deadline lease. One conditional UpdateItem that
        returns the run; None when the attempt no longer owns it (a callback or a cancel ended
        it first). Repeating it is harmless (same values, same condition)."""
        m = SessionModel
        item = m(s.agent_id, s.session_id)
        actions = [m.is_async.set(True), m.run_lease_until.set(lease_until)]
        actions.append(m.heartbeat_seconds.set(heartbeat_seconds) if heartbeat_seconds else m.heartbeat_seconds.remove())
        try:
            with aws_call("accept async run"):
                item.update(actions=actions, condition=_owned(s))
            return session_from_item(item)
        except ConditionFailed:
            return None

    def touch(self, s: Session, now: float, *, lease_until: float | None = None, progress: dict | None = None,
              progress_event: bool = False, heartbeat: bool = False, details=None,
              set_details: bool = False) -> Session | None:
        """A progress or heartbeat callback of the live attempt ``s.attempt``: one conditional
        UpdateItem (the attempt still owns the run, is still as sync or async as ``s`` says, and
        the token is still this attempt's). ``lease_until`` resets an async attempt's lease.
        Returns the run as written, or None when it moved meanwhile (read it again)."""
        m = SessionModel
        item = m(s.agent_id, s.session_id)
        actions = []
        if lease_until is not None:
            actions.append(m.run_lease_until.set(lease_until))
        if progress is not None:
            actions.append(m.progress.set(progress))
        if progress_event:
            actions.append(m.progress_event_at.set(now))
        if heartbeat:
            actions.append(m.last_heartbeat_at.set(now))
        if set_details:
            actions.append(m.last_heartbeat_details.set(details) if details is not None
                           else m.last_heartbeat_details.remove())
        cond = _owned(s) & (m.callback_hash == s.callback_hash)
        cond = cond & ((m.is_async == True) if s.is_async else m.is_async.does_not_exist())  # noqa: E712
        try:
            with aws_call("record callback"):
                item.update(actions=actions, condition=cond)
            return session_from_item(item)
        except ConditionFailed:
            return None

    def wait_again(self, s: Session, next_attempt_at: float, now: float) -> bool:
        """An ADMITTED or RUNNING-claimed run that must wait (overlap): back to the pending set,
        slot released, same attempt number."""
        token = request_token("wait", s.session_id, s.attempt, next_attempt_at)
        m = SessionModel
        tx = Tx(token)
        tx.update("session", m(s.agent_id, s.session_id), [
            m.stage.set(STAGE_PENDING), m.next_attempt_at.set(next_attempt_at), m.tx.set(token),
            m.slot.remove(), m.run_lease_until.remove(), m.claim.remove(),
            m.pending_shard.set(pending_shard(s.session_id, self.pending_shards)),
            m.pending_rank.set(pending_rank(s.priority.rank, next_attempt_at, s.session_id, s.trigger.value == "BACKFILL")),
            m.holds.remove(),
        ], (m.stage == STAGE_ADMITTED) & (m.attempt == s.attempt) & (m.slot == s.slot))
        c = ControlModel
        tx.update("counter", c(slot_key(s.slot)), [c.used.add(-1)], c.used >= 1)
        _key_changes(tx, s, None, None, None, frozenset())
        res = tx.commit("wait again")
        if res.ok:
            return True
        current = self.get(s.agent_id, s.session_id)
        return current is not None and current.tx == token


KEY_OP = "key:"  # transaction item names of keyed counters


def _take_key(tx: Tx, key: str, n: int, limit: int, expires_at: float | None) -> None:
    """Take ``n`` of a keyed counter, only while it stays within ``limit``."""
    c = ControlModel
    actions = [c.used.add(n)]
    if expires_at is not None:  # a throttle window: it goes by itself after its window
        actions.append(c.expires_at.set(_ttl(expires_at)))
    tx.update(KEY_OP + key, c(key), actions, c.used.does_not_exist() | (c.used <= limit - n))


def _key_changes(tx: Tx, s: Session, hand_off, key_limits, key_expiry, skip: frozenset[str]) -> None:
    """The finishing run's keyed counters: given back, or (hand-off) passed to the next run,
    which takes what it needs besides."""
    c = ControlModel
    give, take = list(s.holds), []
    if hand_off is not None:
        give, take = handoff_changes(s.holds, hand_off[1])
        take = take + list(hand_off[1].starts)
    for k in give:
        if k not in skip:
            tx.update(KEY_OP + k, c(k), [c.used.add(-1)], c.used >= 1)
    own = {k: (lim, exp) for k, lim, exp in hand_off[1].key_limits} if hand_off is not None else {}
    for k in take:
        lim, exp = own.get(k) or ((key_limits or {})[k], (key_expiry or {}).get(k))
        _take_key(tx, k, 1, lim, exp)


def _owned(s: Session):
    """The condition that attempt ``s.attempt`` still owns the run (its claim token)."""
    m = SessionModel
    return (m.status == SessionStatus.RUNNING.value) & (m.attempt == s.attempt) & (m.claim == s.claim)


def _touches(action, names: tuple[str, ...]) -> bool:
    """Whether a pynamodb update action sets or removes one of the attributes ``names``."""
    path = getattr(action, "values", [None])[0]
    return getattr(path, "attribute_name", None) in names or str(path) in names


def _ttl(epoch: float):
    from datetime import datetime, timezone

    return datetime.fromtimestamp(int(epoch), tz=timezone.utc)
