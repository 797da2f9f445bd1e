"""Agents, schedules, sessions and the DLQ: what the REST API calls.

Validation of shapes happens in the API layer (schemas); the rules that need
the domain (cron, time zones, kind configs) happen here.
"""
from __future__ import annotations

import builtins
import itertools
import logging
import math
from datetime import datetime, timezone

from chalicelib.agents.registry import check_config
from chalicelib.agents.signing import new_secret, rotated
from chalicelib.api import schemas
from chalicelib.api.serialize import agent_json, iso, schedule_fields_json, schedule_json, session_json
from chalicelib.api.validation import parse_datetime, validate
from chalicelib.domain.budget import parse_budget
from chalicelib.domain.cron import CronError, CronSchedule, parse_timezone
from chalicelib.domain.expressions import (
    AtFires,
    CronFires,
    ExcludedDates,
    FireTimes,
    RateFires,
    fire_times_for,
    parse_exclude_dates,
    parse_expression,
)
from chalicelib.domain.history import HistoryEntry, change_action, schedule_changed
from chalicelib.domain.ids import due_shard, jitter_offset, new_agent_id
from chalicelib.domain.labels import check_labels, parse_selector
from chalicelib.domain.model import CatchupPolicy, OverlapPolicy, Priority, SessionStatus
from chalicelib.domain.records import Agent, Session
from chalicelib.domain.schedule import ScheduleSpec, add_period_start, as_fire_times, close_period
from chalicelib.errors import ConditionFailed, Conflict, NotFound, SchedulerError, ValidationError
from chalicelib.limits import MAX_CONTRACT_TIMEOUT_SECONDS

log = logging.getLogger("agent_scheduler.api")
DEFAULT_TIMEOUT = 300
WEBHOOK = "webhook"
CONTRACT_KINDS = ("webhook", "lambda")  # agents that may answer 202 and call back
MAX_SYNC_TIMEOUT_SECONDS = 900  # the other kinds end within one worker invocation


def _utc(dt: datetime) -> float:
    return dt.astimezone(timezone.utc).timestamp()


def parse_schedule_expression(expression: str, tz: str, agent_id: str | None, field_prefix: str = "") -> CronSchedule:
    """A cron expression (only): kept for callers that need cron syntax itself."""
    check_timezone(tz, field_prefix)
    try:
        return CronSchedule.parse(expression, tz, hash_id=agent_id)
    except CronError as exc:
        raise ValidationError(f"{field_prefix}cronExpression", f"{field_prefix}cronExpression: {exc.message}") from None


def check_timezone(tz: str, field_prefix: str = "") -> None:
    try:
        parse_timezone(tz)
    except CronError as exc:
        raise ValidationError(f"{field_prefix}timezone", f"{field_prefix}timezone: {exc.message}") from None


def expression_field(body: dict, prefix: str = "") -> tuple[str, str]:
    """(the field name as the caller gave it, the expression): exactly one of
    ``expression`` and ``cronExpression``."""
    given = [k for k in ("expression", "cronExpression") if body.get(k) is not None]
    if len(given) > 1:
        raise ValidationError(f"{prefix}expression", f"{prefix}expression: give expression or cronExpression, not both")
    if not given:
        raise ValidationError(f"{prefix}expression", f"{prefix}expression is required (or cronExpression)")
    return f"{prefix}{given[0]}", body[given[0]]


def parse_fire_times(text: str, tz: str, agent_id: str | None, field: str, *, anchor: float | None) -> FireTimes:
    try:
        return parse_expression(text, tz, hash_id=agent_id, anchor=anchor)
    except CronError as exc:
        raise ValidationError(field, f"{field}: {exc.message}") from None


def exclude_dates_from(values, prefix: str = "") -> tuple[str, ...]:
    if not values:
        return ()
    try:
        return parse_exclude_dates(values, f"{prefix}excludeDates")
    except CronError as exc:
        raise ValidationError(f"{prefix}excludeDates", exc.message) from None


def upcoming_fires(spec: ScheduleSpec, fires: FireTimes, next_run_at: float | None, n: int) -> list[float]:
    """The next ``n`` fires that will run, from ``next_run_at`` (the first fire the tick has
    not processed yet) on: excluded dates left out, nothing after endAt."""
    if next_run_at is None or n <= 0:
        return []
    excluded = spec.excluded
    if spec.paused_until is not None and next_run_at < spec.paused_until:
        # fires before pausedUntil are skipped: count from the first one at or after it
        at = fires.next_after(datetime.fromtimestamp(spec.paused_until - 0.001, tz=timezone.utc))
        if at is None:
            return []
        next_run_at = at.timestamp()
    first = [] if excluded.excludes(next_run_at) else [next_run_at]
    rest = (t.timestamp() for t in excluded.included_after(fires, datetime.fromtimestamp(next_run_at, tz=timezone.utc)))
    out: list[float] = []
    for t in itertools.chain(first, rest):
        if len(out) >= n or (spec.end_at is not None and t > spec.end_at):
            break
        out.append(t)
    return out


class AgentService:
    def __init__(self, container) -> None:
        self.c = container
        self.s = container.settings

    def now(self) -> float:
        return self.c.clock.now().timestamp()

    # --- agents ---------------------------------------------------------------------
    def _check_config(self, tenant_id: str, kind: str, config) -> dict:
        return check_config(kind, config, tenant_id, self.c.agent_policy)

    def create(self, tenant_id: str, body: dict) -> dict:
        body = validate(body, schemas.AGENT_CREATE)
        config = self._check_config(tenant_id, body["kind"], body.get("config"))
        self._check_timeout(body["kind"], body.get("timeoutSeconds", DEFAULT_TIMEOUT))
        now = self.now()
        agent = Agent(
            tenant_id=tenant_id,
            agent_id=new_agent_id(),
            name=body["name"],
            kind=body["kind"],
            config=config,
            description=body.get("description"),
            labels=check_labels(body.get("labels")),
            timeout_seconds=body.get("timeoutSeconds", DEFAULT_TIMEOUT),
            max_retries=body.get("maxRetries", self.s.max_retries),
            created_at=now,
            updated_at=now,
            heartbeat_seconds=body.get("heartbeatSeconds"),
            budget=parse_budget(body.get("budget")),
            pause_after_failures=body.get("pauseAfterFailures"),
        )
        agent = self._with_limits(tenant_id, agent, body)
        secret = None
        if agent.kind == WEBHOOK:  # every webhook agent is born with its signing secret
            secret = new_secret()
            agent = agent.with_(signing_keys=rotated(None, self._encrypt(secret, agent), now, revoke_previous=True))
        self.c.agents.create(agent)
        return self._with_contract_fields(self.agent_view(agent), agent, secret)

    # --- the agent contract: signing secrets and timeouts ----------------------------------
    def _encrypt(self, secret: str, agent: Agent) -> str:
        return self.c.signing_keys.encrypt(secret, agent.tenant_id, agent.agent_id)

    def _check_timeout(self, kind: str, timeout: int) -> None:
        """Agents that speak the contract may run a day (they answer 202 and call back); the
        others end within one worker invocation."""
        limit = MAX_CONTRACT_TIMEOUT_SECONDS if kind in CONTRACT_KINDS else MAX_SYNC_TIMEOUT_SECONDS
        if timeout > limit:
            raise ValidationError(
                "timeoutSeconds",
                f"timeoutSeconds must be at most {limit} for a {kind} agent, got {timeout}"
                + ("" if kind in CONTRACT_KINDS else " (webhook and lambda agents may run up to 86400)"),
            )

    def _with_contract_fields(self, view: dict, agent: Agent, secret: str | None = None) -> dict:
        """The create/PATCH answer: the signing secret when this answer made it, and warnings."""
        if secret is not None:
            view["signingSecret"] = secret
        limit = self.s.sync_wait_seconds
        if agent.kind in CONTRACT_KINDS and agent.timeout_seconds > limit:
            view["warnings"] = [
                f"timeoutSeconds ({agent.timeout_seconds}) is longer than the longest synchronous answer "
                f"({limit} s, SCHEDULER_SYNC_WAIT_SECONDS): for longer work the agent must answer 202 and "
                "report by callback, or its attempts end TIMEOUT"
            ]
        return view

    def rotate_signing_secret(self, tenant_id: str, agent_id: str, body: dict | None) -> dict:
        """A new signing secret, shown once; the old one stays valid 24 h unless ``revokePrevious``."""
        body = validate(body or {}, schemas.SIGNING_SECRET_ROTATE)
        agent = self.get_agent(tenant_id, agent_id)
        if agent.kind != WEBHOOK:
            raise ValidationError("kind", f"kind: only webhook agents have a signing secret (this one is {agent.kind})")
        secret = new_secret()
        now = self.now()
        keys = rotated(agent.signing_keys, self._encrypt(secret, agent), now,
                       revoke_previous=bool(body.get("revokePrevious", False)))
        self.c.agents.set_signing_keys(tenant_id, agent_id, keys)
        return {
            "agentId": agent_id,
            "signingSecret": secret,
            "previousValidUntil": iso(keys.get("previousUntil")),
        }

    def _with_limits(self, tenant_id: str, agent: Agent, body: dict) -> Agent:
        """The flow-control fields given in ``body`` (``null`` removes a limit)."""
        changes: dict = {}
        if "maxConcurrency" in body:
            changes["max_concurrency"] = body["maxConcurrency"]
        if "throttle" in body:
            changes["throttle"] = dict(body["throttle"]) if body["throttle"] else None
        if "pools" in body:
            changes["pools"] = self.c.pool_service.check_agent_pools(tenant_id, body["pools"])
        return agent.with_(**changes) if changes else agent

    def get_agent(self, tenant_id: str, agent_id: str) -> Agent:
        if not agent_id or len(agent_id) > 100:
            raise NotFound(f"agent {agent_id!r} not found")
        agent = self.c.agents.get(tenant_id, agent_id)
        if agent is None:
            raise NotFound(f"agent {agent_id!r} not found")
        return agent

    def agent_view(self, agent: Agent, usages: dict | None = None) -> dict:
        """An agent as answers show it, with today's ``budgetUsage`` (null without a budget; read
        here unless ``usages``, read for a whole page at once, has it)."""
        from chalicelib.services.brakes import budget_usage_json

        out = agent_json(agent, self._schedule_view(agent) if agent.schedule else None)
        if usages is not None:
            usage = usages.get((agent.tenant_id, agent.agent_id))
            out["budgetUsage"] = usage.to_json() if usage is not None else None
        else:
            out["budgetUsage"] = budget_usage_json(self.c, agent, self.now())
        return out

    def get(self, tenant_id: str, agent_id: str) -> dict:
        return self.agent_view(self.get_agent(tenant_id, agent_id))

    def list(self, tenant_id: str, limit: int, token: str | None, label: builtins.list[str] | None = None) -> dict:
        """A page of agents; ``label``: ``key=value`` selectors that must all hold."""
        wanted = parse_selector(label or [])
        items, nxt = self.c.agents.list(tenant_id, limit, token, wanted) if wanted else self.c.agents.list(tenant_id, limit, token)
        from chalicelib.services.brakes import budget_usages

        usages = budget_usages(self.c, items, self.now())  # one batch read for the page's budgets
        return {"items": [self.agent_view(a, usages) for a in items], "nextToken": nxt}

    def patch(self, tenant_id: str, agent_id: str, body: dict) -> dict:
        body = validate(body, schemas.AGENT_PATCH)

        def change(agent: Agent) -> Agent:
            kind = body.get("kind", agent.kind)
            config = body.get("config", agent.config if kind == agent.kind else None)
            if "kind" in body or "config" in body:
                config = self._check_config(tenant_id, kind, config)
            updated = agent.with_(
                name=body.get("name", agent.name),
                kind=kind,
                config=config,
                description=body.get("description", agent.description),
                labels=check_labels(body["labels"]) if "labels" in body else agent.labels,
                timeout_seconds=body.get("timeoutSeconds", agent.timeout_seconds),
                max_retries=body.get("maxRetries", agent.max_retries),
                heartbeat_seconds=body.get("heartbeatSeconds") if "heartbeatSeconds" in body else agent.heartbeat_seconds,
                updated_at=self.now(),
                budget=parse_budget(body["budget"]) if "budget" in body else agent.budget,
                pause_after_failures=body.get("pauseAfterFailures") if "pauseAfterFailures" in body
                else agent.pause_after_failures,
            )
            updated = self._with_limits(tenant_id, updated, body)
            self._check_timeout(updated.kind, updated.timeout_seconds)
            if updated.kind == WEBHOOK and not (updated.signing_keys or {}).get("current"):
                made["secret"] = new_secret()  # became a webhook agent: it gets its signing secret now
                updated = updated.with_(
                    signing_keys=rotated(None, self._encrypt(made["secret"], updated), self.now(), revoke_previous=True))
            if "schedule" in body:  # replace (as POST .../schedule does) or remove the schedule
                if body["schedule"] is None:
                    updated = updated.with_(schedule=None, next_run_at=None)
                else:
                    spec, fires = self._spec_from_body(body["schedule"], agent, agent.schedule, prefix="schedule.")
                    updated = updated.with_(schedule=spec, next_run_at=self.first_fire(spec, fires, self.now()))
            return updated

        made: dict = {}
        saved = body.get("schedule") is not None
        updated = self._mutate(tenant_id, agent_id, change, saved=saved)
        if made.get("secret"):
            self.c.agents.set_signing_keys(tenant_id, agent_id, updated.signing_keys)
        if saved:
            self.c.dispatcher.dispatch_soon(self.c.agents.get(tenant_id, agent_id) or updated)
        return self._with_contract_fields(self.agent_view(updated), updated, made.get("secret"))

    def bulk_cancel(self, tenant_id: str, body: dict) -> dict:
        """``POST /api/sessions/cancel``: the caller's own unfinished runs matching the filters."""
        from chalicelib.services.brakes import bulk_cancel

        body = validate(body, schemas.BULK_CANCEL)
        if not body.get("agentIds") and not body.get("scheduledBefore"):
            raise ValidationError("agentIds", "agentIds or scheduledBefore is required (a bulk cancel needs a filter)")
        n = bulk_cancel(self.c, tenant_id, body.get("agentIds"), body.get("statuses"),
                        _opt_time(body.get("scheduledBefore"), "scheduledBefore"))
        if n:
            self.c.dispatcher.admit_pending()
        return {"cancelled": n}

    def delete(self, tenant_id: str, agent_id: str) -> None:
        self.get_agent(tenant_id, agent_id)
        if not self.c.agents.delete(tenant_id, agent_id):
            raise NotFound(f"agent {agent_id!r} not found")
        try:  # the schedule's history is kept while the agent exists
            self.c.history.delete_all(agent_id)
        except SchedulerError:
            log.exception("could not delete the schedule history", extra={"agent_id": agent_id})

    def _mutate(self, tenant_id: str, agent_id: str, change, *, saved: bool = False,
                changed_by: str | None = None) -> Agent:
        """Read, change, write under the condition that the tick did not move the schedule
        (and nobody changed it) meanwhile; on a lost race read again (a normal outcome, not
        an error). ``saved``: the change writes the schedule on purpose (a new version even
        if nothing in it differs)."""
        for _ in range(5):
            agent = self.get_agent(tenant_id, agent_id)
            updated = change(agent)
            try:
                return self._save(updated, must_exist=True, expected=agent, saved=saved, changed_by=changed_by)
            except ConditionFailed:
                continue
        raise Conflict(f"agent {agent_id!r} is changing too fast; try again")

    def _save(self, agent: Agent, must_exist: bool, expected: Agent | None = None, *, saved: bool = False,
              changed_by: str | None = None) -> Agent:
        """Write the agent; returns it as written (with its schedule version).

        With ``expected`` (the agent as read) the write only lands if neither the tick
        (``next_run_at``) nor another change (``schedule_version``) moved it since; a change
        of the schedule is recorded as a new history version in the same transaction and
        announced with a ``schedule:changed`` event.
        """
        shard = at = None
        spec = agent.schedule
        if spec is not None and spec.enabled and agent.next_run_at is not None:
            shard = due_shard(agent.agent_id, self.s.due_shards)
            at = agent.next_run_at + jitter_offset(agent.agent_id, agent.next_run_at, spec.jitter_seconds)
        write = dict(due_shard=shard, due_at=at, must_exist=must_exist,
                     expect_next_run_at=expected.next_run_at if expected else None, check_next_run_at=expected is not None)
        action = change_action(expected.schedule, spec, saved=saved) if expected is not None else None
        entry = None
        try:
            if expected is None:
                self.c.agents.save(agent, **write)
            elif action is None:
                self.c.history.save_at_version(agent, expected_version=expected.schedule_version, **write)
            else:
                now = self.now()
                version = expected.schedule_version + 1
                shown = spec if spec is not None else expected.schedule
                entry = HistoryEntry(
                    agent_id=agent.agent_id, tenant_id=agent.tenant_id, version=version, changed_at=now,
                    changed_by=changed_by or agent.tenant_id, action=action,
                    schedule=schedule_fields_json(agent.agent_id, shown, version),
                )
                self.c.history.save_with_history(agent, entry, expected_version=expected.schedule_version, **write)
                agent = agent.with_(schedule_version=version)
        except ConditionFailed:
            if expected is not None and self.c.agents.get(agent.tenant_id, agent.agent_id) is not None:
                raise  # the schedule moved meanwhile: the caller reads again
            raise NotFound(f"agent {agent.agent_id!r} not found") from None
        if entry is not None:
            self.c.events.publish(
                agent.tenant_id, agent.agent_id,
                schedule_changed(agent.agent_id, entry.version, entry.action, entry.changed_by, entry.changed_at),
            )
        return agent

    # --- schedules --------------------------------------------------------------------
    def _spec_from_body(self, body: dict, agent: Agent, previous: ScheduleSpec | None, prefix: str = "") -> tuple[ScheduleSpec, FireTimes]:
        body = validate(body, schemas.SCHEDULE_PUT, path="body" if not prefix else prefix.rstrip("."))
        field, text = expression_field(body, prefix)
        tz = body.get("timezone") or "UTC"
        check_timezone(tz, prefix)
        start_at = _opt_time(body.get("startAt"), f"{prefix}startAt")
        end_at = _opt_time(body.get("endAt"), f"{prefix}endAt")
        if start_at is not None and end_at is not None and end_at <= start_at:
            raise ValidationError(f"{prefix}endAt", f"{prefix}endAt must be after startAt")
        now = self.now()
        fires = parse_fire_times(text, tz, agent.agent_id, field, anchor=now)
        anchor = None
        if isinstance(fires, RateFires):
            if start_at is not None:
                anchor = start_at
            elif previous is not None and previous.cron_expression == fires.expression and previous.anchor_at is not None:
                anchor = previous.anchor_at  # the same rate saved again keeps counting from where it did
            else:
                anchor = float(math.floor(now))
            fires = parse_fire_times(text, tz, agent.agent_id, field, anchor=anchor)
        if isinstance(fires, AtFires) and fires.fire_at <= now:
            raise ValidationError(field, f"{field}: {fires.expression} is in the past ({iso(fires.fire_at, tz)})")
        jitter = body.get("jitterSeconds", 0)
        if jitter:
            gap = fires.min_interval_seconds(datetime.fromtimestamp(max(now, start_at or now), tz=timezone.utc))
            if gap is not None and jitter > gap:
                raise ValidationError(
                    f"{prefix}jitterSeconds",
                    f"{prefix}jitterSeconds ({jitter}) must not exceed the shortest interval between two fires "
                    f"of the schedule ({int(gap)} s)",
                )
        excluded = exclude_dates_from(body.get("excludeDates"), prefix)
        paused_until = _opt_time(body.get("pausedUntil"), f"{prefix}pausedUntil")
        spec = ScheduleSpec(
            cron_expression=fires.expression,
            timezone=tz,
            priority=Priority(body.get("priority", "NORMAL")),
            enabled=body.get("enabled", True),
            catchup=CatchupPolicy(body.get("catchup", "LATEST")),
            catchup_window_seconds=body.get("catchupWindowSeconds", 3600),
            overlap_policy=OverlapPolicy(body.get("overlapPolicy", "SKIP")),
            start_at=start_at,
            end_at=end_at,
            jitter_seconds=jitter,
            created_at=previous.created_at if previous else now,
            updated_at=now,
            disabled_periods=() if body.get("enabled", True) else ((now, None),),
            anchor_at=anchor,
            exclude_dates=excluded,
            paused_until=paused_until,
        )
        return spec, fires

    def first_fire(self, spec: ScheduleSpec, cron: FireTimes | CronSchedule, after: float) -> float | None:
        """The schedule's first fire strictly after ``after`` (from startAt and pausedUntil on); None:
        it never fires. The fires a pause leaves out are never planned (the ledger shows them
        SKIPPED, PAUSED, without a record each)."""
        fires = as_fire_times(cron)
        after = max(after, (spec.start_at - 0.001) if spec.start_at else after)
        after = max(after, (spec.paused_until - 0.001) if spec.paused_until else after)
        nxt = fires.next_after(datetime.fromtimestamp(after, tz=timezone.utc))
        if nxt is None:
            return None
        t = nxt.timestamp()
        if spec.end_at is not None and t > spec.end_at:
            return None
        return t

    def put_schedule(self, tenant_id: str, agent_id: str, body: dict) -> dict:
        built = {}

        def change(agent: Agent) -> Agent:
            spec, fires = self._spec_from_body(body, agent, agent.schedule)
            built["fires"] = fires
            return agent.with_(schedule=spec, next_run_at=self.first_fire(spec, fires, self.now()), updated_at=self.now())

        updated = self._mutate(tenant_id, agent_id, change, saved=True)
        current = self.c.agents.get(tenant_id, agent_id)
        self.c.dispatcher.dispatch_soon(current or updated)
        fires = built["fires"]
        view = self._schedule_view(updated, fires)
        view["warnings"] = fires.warnings(self.c.clock.now(), updated.timeout_seconds)
        view["conflicts"] = self._conflicts_after_save(tenant_id, updated)
        return view

    def _conflicts_after_save(self, tenant_id: str, agent: Agent) -> builtins.list:  # `list` is a method here
        from chalicelib.services.conflicts import conflicts_involving

        return conflicts_involving(self.c, tenant_id, agent.agent_id)

    def _schedule_view(self, agent: Agent, fires: FireTimes | None = None) -> dict:
        spec = agent.schedule
        fires = fires or fire_times_for(spec, agent.agent_id)
        runs = upcoming_fires(spec, fires, agent.next_run_at if spec.enabled else None, 5)
        return schedule_json(agent, spec, runs[0] if runs else None, runs)

    def get_schedule(self, tenant_id: str, agent_id: str) -> dict:
        agent = self.get_agent(tenant_id, agent_id)
        if agent.schedule is None:
            raise NotFound(f"agent {agent_id!r} has no schedule")
        return self._schedule_view(agent)

    def delete_schedule(self, tenant_id: str, agent_id: str) -> None:
        def change(agent: Agent) -> Agent:
            if agent.schedule is None:
                raise NotFound(f"agent {agent_id!r} has no schedule")
            return agent.with_(schedule=None, next_run_at=None, updated_at=self.now())

        self._mutate(tenant_id, agent_id, change)

    def with_enabled(self, agent: Agent, enabled: bool, now: float, reason: str | None = None) -> Agent:
        """The agent with its schedule enabled or disabled (unchanged if already so). ``reason``:
        why the system disabled it (enabling clears it)."""
        spec = agent.schedule
        if spec.enabled == enabled:
            return agent
        periods = close_period(spec.disabled_periods, now) if enabled else add_period_start(spec.disabled_periods, now)
        new_spec = ScheduleSpec(**{**spec.__dict__, "enabled": enabled, "updated_at": now, "disabled_periods": periods,
                                   "disabled_reason": None if enabled else reason})
        next_run_at = agent.next_run_at
        if enabled and next_run_at is None:
            next_run_at = self.first_fire(new_spec, fire_times_for(new_spec, agent.agent_id), now)
        return agent.with_(schedule=new_spec, next_run_at=next_run_at, updated_at=now)

    def set_enabled(self, tenant_id: str, agent_id: str, enabled: bool) -> dict:
        def change(agent: Agent) -> Agent:
            if agent.schedule is None:
                raise NotFound(f"agent {agent_id!r} has no schedule")
            return self.with_enabled(agent, enabled, self.now())

        updated = self._mutate(tenant_id, agent_id, change)
        if enabled:
            self.c.dispatcher.dispatch_soon(self.c.agents.get(tenant_id, agent_id) or updated)
        return self._schedule_view(updated)

    def schedule_history(self, tenant_id: str, agent_id: str, limit: int, token: str | None) -> dict:
        self.get_agent(tenant_id, agent_id)
        items, nxt = self.c.history.list(agent_id, limit, token)
        return {
            "items": [
                {
                    "version": e.version,
                    "changedAt": iso(e.changed_at),
                    "changedBy": e.changed_by,
                    "action": e.action.value,
                    "schedule": e.schedule,
                }
                for e in items if e.tenant_id == tenant_id
            ],
            "nextToken": nxt,
        }

    def validate_expression(self, body: dict) -> dict:
        body = validate(body, schemas.VALIDATE)
        field, text = expression_field(body, "")
        tz = body.get("timezone") or "UTC"
        check_timezone(tz, "")
        start = parse_datetime(body["from"], "from") if "from" in body else self.c.clock.now()
        start_at = _opt_time(body.get("startAt"), "startAt")
        anchor = start_at if start_at is not None else float(math.floor(start.timestamp()))
        fires = parse_fire_times(text, tz, body.get("agentId"), field, anchor=anchor)
        if isinstance(fires, AtFires) and fires.fire_at <= start.timestamp():
            raise ValidationError(field, f"{field}: {fires.expression} is in the past ({iso(fires.fire_at, tz)})")
        excluded = ExcludedDates.of(exclude_dates_from(body.get("excludeDates"), ""), tz)
        after = start
        if start_at is not None and start_at - 0.001 > start.timestamp():
            after = datetime.fromtimestamp(start_at - 0.001, tz=timezone.utc)
        runs = list(itertools.islice(excluded.included_after(fires, after), body.get("count", 5)))
        if not runs and isinstance(fires, CronFires) and not excluded:
            raise ValidationError(field, f"{field}: {fires.expression!r} never fires after {start.isoformat()}")
        zone = parse_timezone(tz)
        return {
            "valid": True,
            "expression": fires.expression,
            "cronExpression": fires.expression,
            "kind": fires.kind,
            "timezone": tz,
            "nextRuns": [r.astimezone(zone).isoformat() for r in runs],
            "warnings": fires.warnings(start, body.get("timeoutSeconds")),
        }

    # --- runs -------------------------------------------------------------------------
    def run_now(self, tenant_id: str, agent_id: str, body: dict) -> dict:
        body = validate(body, schemas.RUN_NOW)
        agent = self.get_agent(tenant_id, agent_id)
        from chalicelib.services.brakes import check_run_now

        check_run_now(self.c, agent, self.now())
        default = agent.schedule.priority if agent.schedule else Priority.NORMAL
        priority = Priority(body["priority"]) if "priority" in body else default
        s = self.c.dispatcher.submit_manual(agent, priority, body.get("input"))
        reason, waiting_for = self.c.dispatcher.waiting_after_submit(s)
        return {"sessionId": s.session_id, "status": "QUEUED", "agentId": agent_id, "priority": priority.value,
                "waitingReason": reason, "waitingFor": waiting_for}

    def list_sessions(self, tenant_id: str, agent_id: str, limit: int, token: str | None, status: str | None) -> dict:
        self.get_agent(tenant_id, agent_id)
        if status is not None and status not in SessionStatus.__members__:
            raise ValidationError("status", f"status must be one of {', '.join(SessionStatus.__members__)}")
        items, nxt = self.c.sessions.list(agent_id, limit, token, status)
        now, paused = self._waiting_context(items)
        return {"items": [session_json(s, now=now, paused=paused) for s in items if s.tenant_id == tenant_id],
                "nextToken": nxt}

    def _waiting_context(self, items) -> tuple[float, bool]:
        """The clock and the pause, read only when a run in ``items`` waits (for its waitingReason)."""
        now = self.now()
        waits = any(s.stage == "PENDING" for s in items)
        return now, bool(waits and self.c.control.state().paused)

    def get_session_record(self, tenant_id: str, agent_id: str, session_id: str) -> Session:
        self.get_agent(tenant_id, agent_id)
        s = self.c.sessions.get(agent_id, session_id) if 0 < len(session_id) <= 100 else None
        if s is None or s.tenant_id != tenant_id:
            raise NotFound(f"session {session_id!r} not found")
        return s

    def get_session(self, tenant_id: str, agent_id: str, session_id: str) -> dict:
        s = self.get_session_record(tenant_id, agent_id, session_id)
        now, paused = self._waiting_context([s])
        return session_json(s, now=now, paused=paused)

    def cancel(self, tenant_id: str, agent_id: str, session_id: str) -> dict:
        for _ in range(5):
            s = self.get_session_record(tenant_id, agent_id, session_id)
            if s.status.finished:
                raise Conflict(f"session {session_id!r} already finished ({s.status.value})")
            done = self.c.dispatcher.cancel(s)
            if done is not None:
                return session_json(done)
        raise Conflict(f"session {session_id!r} is changing too fast; try again")

    # --- DLQ --------------------------------------------------------------------------
    def list_dlq(self, tenant_id: str, admin: bool, limit: int, token: str | None) -> dict:
        items, nxt = self.c.sessions.list_dlq(None if admin else tenant_id, limit, token)
        return {
            "items": [
                {
                    "sessionId": s.session_id,
                    "agentId": s.agent_id,
                    "tenantId": s.tenant_id,
                    "error": s.error,
                    "attempt": s.attempt,
                    "failedAt": iso(s.failed_at),
                }
                for s in items
            ],
            "nextToken": nxt,
        }

    def redrive(self, tenant_id: str, admin: bool, body: dict) -> dict:
        body = validate(body, schemas.REDRIVE)
        from chalicelib.services.dlq import redrive

        n = redrive(self.c, None if admin else tenant_id, body.get("sessionIds"))
        return {"redriven": n}


def _opt_time(value, field: str) -> float | None:
    if value is None:
        return None
    return _utc(parse_datetime(value, field))
