"""pynamodb models: the DynamoDB tables, their keys, indexes and TTL.

These definitions are the single source for the tables: local start-up and
tests create tables from them, and the infra parity test checks the CDK
template against them.

Key design
- agents: ``tenant_id`` / ``agent_id``. A tenant's agents are one Query.
  The schedule lives on the agent item. ``due-index`` is a *sparse, sharded*
  GSI (``due_shard`` / ``due_at``): only enabled schedules carry ``due_shard``,
  so the tick queries each shard for ``due_at <= now + lookahead``; no scan.
- sessions: ``agent_id`` / ``session_id``; session ids start with their
  UTC time, so a Query with ScanIndexForward=False is newest first.
  ``pending-index`` (sparse, sharded): runs waiting for a slot, sorted by
  ``pending_rank`` = priority rank, eligible time, id: admission order.
  ``dlq-index`` (sparse): dead runs per tenant, newest failure last.
  ``expires_at`` is the TTL (SCHEDULER_SESSION_RETENTION_DAYS).
  ``active-index`` (sparse, by slot shard): runs holding a slot (ADMITTED or
  RUNNING), sorted by ``run_lease_until``: the recovery sweep reads the
  expired ones and the reconciler counts each shard's holders.
- control: small items: ``STATE`` (paused, last tick) and one slot counter
  per shard of the global cap (``SLOTS#s000``...), changed by conditional ADD;
  ``idempotency#<hash>``: a creating request's key and its sealed answer (TTL ``expiration``).
  one budget day per budgeted agent and local day (``BUDGET#...``, TTL).
- connections: WebSocket connections; ``tenant-index`` finds a tenant's.
- events: the per-tenant event stream (``seq``), its head and WebSocket tickets.
"""
from __future__ import annotations

from pynamodb.attributes import (
    BooleanAttribute,
    JSONAttribute,
    ListAttribute,
    MapAttribute,
    NumberAttribute,
    TTLAttribute,
    UnicodeAttribute,
    UnicodeSetAttribute,
)
from pynamodb.indexes import AllProjection, GlobalSecondaryIndex, IncludeProjection
from pynamodb.models import Model


class DueIndex(GlobalSecondaryIndex):
    class Meta:
        index_name = "due-index"
        projection = AllProjection()

    due_shard = UnicodeAttribute(hash_key=True)
    due_at = NumberAttribute(range_key=True)


class AgentTenantModel(Model):
    class Meta:
        table_name = "agent-scheduler-agents"

    tenant_id = UnicodeAttribute(hash_key=True)
    agent_id = UnicodeAttribute(range_key=True)
    name = UnicodeAttribute()
    kind = UnicodeAttribute()
    description = UnicodeAttribute(null=True)
    config = JSONAttribute(null=True)
    labels = MapAttribute(null=True)  # string -> string (a raw map, so a Query can filter on one label)
    timeout_seconds = NumberAttribute()
    max_retries = NumberAttribute()
    created_at = NumberAttribute()
    updated_at = NumberAttribute()
    # schedule (null when the agent has none)
    schedule = JSONAttribute(null=True)
    next_run_at = NumberAttribute(null=True)  # next unprocessed fire time (epoch s)
    due_shard = UnicodeAttribute(null=True)  # sparse: only enabled schedules
    due_at = NumberAttribute(null=True)  # next_run_at + jitter
    due_index = DueIndex()
    schedule_version = NumberAttribute(null=True)  # bumped by every schedule change (see adapters/history.py)
    # run bookkeeping
    active_runs = NumberAttribute(default=0)
    consecutive_failures = NumberAttribute(default=0)
    alerted = BooleanAttribute(default=False)
    plan_token = UnicodeAttribute(null=True)  # the tick transaction that last advanced the schedule
    # flow control
    max_concurrency = NumberAttribute(null=True)
    throttle = JSONAttribute(null=True)  # {limit, periodSeconds}
    pools: ListAttribute[str] = ListAttribute(of=UnicodeAttribute, null=True)
    signing_keys = JSONAttribute(null=True)  # webhook agents: ciphertexts of the signing secrets, never plain
    heartbeat_seconds = NumberAttribute(null=True)  # async attempts: longest silence before a TIMEOUT
    # brakes: the daily budget ({maxRunsPerDay?, ..., timezone, onExhausted}) and the auto-pause
    budget = JSONAttribute(null=True)
    pause_after_failures = NumberAttribute(null=True)


class PendingIndex(GlobalSecondaryIndex):
    class Meta:
        index_name = "pending-index"
        projection = AllProjection()

    pending_shard = UnicodeAttribute(hash_key=True)
    pending_rank = UnicodeAttribute(range_key=True)


class DlqIndex(GlobalSecondaryIndex):
    class Meta:
        index_name = "dlq-index"
        projection = IncludeProjection(["tenant_id", "status", "error", "attempt", "trigger"])

    dlq_tenant = UnicodeAttribute(hash_key=True)
    failed_at = NumberAttribute(range_key=True)


class ActiveIndex(GlobalSecondaryIndex):
    class Meta:
        index_name = "active-index"
        projection = AllProjection()

    slot = UnicodeAttribute(hash_key=True)
    run_lease_until = NumberAttribute(range_key=True)


class SessionModel(Model):
    class Meta:
        table_name = "agent-scheduler-sessions"

    agent_id = UnicodeAttribute(hash_key=True)
    session_id = UnicodeAttribute(range_key=True)
    tenant_id = UnicodeAttribute()
    status = UnicodeAttribute()
    trigger = UnicodeAttribute()
    priority = UnicodeAttribute()
    scheduled_for = NumberAttribute()  # fire time (+ jitter) or request time
    queued_at = NumberAttribute()
    started_at = NumberAttribute(null=True)
    finished_at = NumberAttribute(null=True)
    duration_ms = NumberAttribute(null=True)
    attempt = NumberAttribute(default=0)  # attempts started so far
    max_attempts = NumberAttribute()
    timeout_seconds = NumberAttribute()
    input = JSONAttribute(null=True)
    output = JSONAttribute(null=True)
    error = JSONAttribute(null=True)  # {category, message}
    skip_reason = UnicodeAttribute(null=True)
    next_attempt_at = NumberAttribute(null=True)
    stage = UnicodeAttribute(null=True)  # PENDING | ADMITTED | null (running or done)
    admitted_at = NumberAttribute(null=True)
    run_lease_until = NumberAttribute(null=True)  # claim (ADMITTED) or finish (RUNNING) by then
    slot = UnicodeAttribute(null=True)  # sparse: the slot shard while the run holds a slot
    active_index = ActiveIndex()
    claim = UnicodeAttribute(null=True)  # token of the attempt that owns the run
    tx = UnicodeAttribute(null=True)  # token of the last transaction that wrote the session
    check_overlap = BooleanAttribute(null=True)
    redriven_from = UnicodeAttribute(null=True)
    redriven_to = UnicodeAttribute(null=True)
    cancel_requested = BooleanAttribute(null=True)
    pending_shard = UnicodeAttribute(null=True)
    pending_rank = UnicodeAttribute(null=True)
    pending_index = PendingIndex()
    dlq_tenant = UnicodeAttribute(null=True)
    failed_at = NumberAttribute(null=True)
    dlq_index = DlqIndex()
    expires_at = TTLAttribute(null=True)
    holds: ListAttribute[str] = ListAttribute(of=UnicodeAttribute, null=True)  # keyed counters held with the slot
    waiting_reason = UnicodeAttribute(null=True)  # a keyed limit that held it back at the last admission
    waiting_for = UnicodeAttribute(null=True)
    # callbacks and async attempts (see domain/callbacks.py)
    callback_hash = UnicodeAttribute(null=True)
    prev_callback_hash = UnicodeAttribute(null=True)
    end_attempt = NumberAttribute(null=True)
    ended_by = UnicodeAttribute(null=True)
    end_hash = UnicodeAttribute(null=True)
    is_async = BooleanAttribute(null=True)
    heartbeat_seconds = NumberAttribute(null=True)
    last_heartbeat_at = NumberAttribute(null=True)
    last_heartbeat_details = JSONAttribute(null=True)
    progress = JSONAttribute(null=True)
    progress_event_at = NumberAttribute(null=True)
    usage = JSONAttribute(null=True)
    rate_limited_waits = NumberAttribute(null=True)  # waits a provider's 429 caused (no retry used)


class ControlModel(Model):
    class Meta:
        table_name = "agent-scheduler-control"

    pk = UnicodeAttribute(hash_key=True)
    paused = BooleanAttribute(null=True)
    last_tick_at = NumberAttribute(null=True)
    pauses: ListAttribute[list] = ListAttribute(null=True)  # recent [paused_at, resumed_at|null] pairs
    used = NumberAttribute(null=True)  # slot counters: slots held in this shard
    waiting = BooleanAttribute(null=True)  # slot counters: runs wait for a slot (a hint for finishing workers)
    audit = ListAttribute(null=True)  # slot counters: [used, holders] the reconciler last saw differ
    # one TTL attribute for the table: idempotency records (``idempotency#...``, written by
    # Powertools with ``expiry_attr="expires_at"``) are kept 24 h; keyed counters (``LIM#...``:
    # tenant, agent and pool concurrency; throttle windows) use ``used``, and a throttle
    # window's counter goes by TTL after its window
    expires_at = TTLAttribute(null=True)
    # pools (``POOL#<tenant>#<name>``) and a tenant's pool list (``POOLS#<tenant>``: ``names``)
    max_concurrency = NumberAttribute(null=True)
    throttle = JSONAttribute(null=True)
    blocked_until = NumberAttribute(null=True)
    created_at = NumberAttribute(null=True)
    updated_at = NumberAttribute(null=True)
    names = UnicodeSetAttribute(null=True)
    # budget days (``BUDGET#<tenant>#<agent>#<day>``): one agent's counters for one local day
    runs = NumberAttribute(null=True)
    runtime_seconds = NumberAttribute(null=True)
    cost_usd = NumberAttribute(null=True)


class TenantIndex(GlobalSecondaryIndex):
    class Meta:
        index_name = "tenant-index"
        projection = AllProjection()

    tenant_id = UnicodeAttribute(hash_key=True)


class ConnectionModel(Model):
    class Meta:
        table_name = "agent-scheduler-connections"

    connection_id = UnicodeAttribute(hash_key=True)
    tenant_id = UnicodeAttribute()
    subscriptions = ListAttribute(of=UnicodeAttribute, null=True)
    connected_at = NumberAttribute()
    expires_at = TTLAttribute(null=True)
    tenant_index = TenantIndex()


class EventModel(Model):
    """The event stream: ``tenant_id`` / ``seq``, one item per event, kept by TTL.

    ``seq`` 0 of each tenant is the stream's *head*: ``last_seq`` (the counter, taken
    with an atomic ADD), ``subs`` (connection id -> the agent ids it follows) and
    ``live_from`` (connection id -> the last seq it got by replay; -1 while a replay
    runs). One UpdateItem both takes a seq and reads who must get the event.
    Items keyed ``ticket#<sha256>`` / 0 are single-use WebSocket tickets (``owner``).
    """

    class Meta:
        table_name = "agent-scheduler-events"

    tenant_id = UnicodeAttribute(hash_key=True)
    seq = NumberAttribute(range_key=True)
    event_id = UnicodeAttribute(null=True)
    name = UnicodeAttribute(null=True)
    agent_id = UnicodeAttribute(null=True)
    body = UnicodeAttribute(null=True)  # the whole event, as sent
    expires_at = TTLAttribute(null=True)
    # head only
    last_seq = NumberAttribute(null=True)
    subs = MapAttribute(null=True)
    live_from = MapAttribute(null=True)
    # tickets only
    owner = UnicodeAttribute(null=True)
    scopes = UnicodeAttribute(null=True)


ALL_MODELS: tuple[type[Model], ...] = (AgentTenantModel, SessionModel, ControlModel, ConnectionModel, EventModel)


def bind(settings) -> None:
    """Point every model at the tables named in ``settings`` (once per container)."""
    names = {
        AgentTenantModel: settings.agents_table,
        SessionModel: settings.sessions_table,
        ControlModel: settings.control_table,
        ConnectionModel: settings.connections_table,
        EventModel: settings.events_table,
    }
    for model, table in names.items():
        model.Meta.table_name = table
        model.Meta.region = settings.region
        model.Meta.host = settings.aws_endpoint_url
        model._connection = None  # drop a cached connection to another endpoint


def create_tables(wait: bool = False) -> None:
    """Create every table (local start-up and tests). Same definitions as infra."""
    for model in ALL_MODELS:
        if not model.exists():
            model.create_table(billing_mode="PAY_PER_REQUEST", wait=wait)
            if model._ttl_attribute() is not None:
                model.update_ttl(ignore_update_ttl_errors=True)
