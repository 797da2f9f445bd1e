"""Settings, read once from the environment into a frozen object.

A bad value raises ``ConfigError`` naming the variable, which stops start-up.
An explicit argument beats the environment: ``Settings.from_env({...})``.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass, replace
from typing import Mapping

from chalicelib.errors import ConfigError

# --- the contract's variables (DESIGN 1.2) --------------------------------
API_PORT = "SCHEDULER_API_PORT"
WS_PORT = "SCHEDULER_WS_PORT"
JWT_SECRET = "SCHEDULER_JWT_SECRET"
MAX_CONCURRENT_AGENTS = "SCHEDULER_MAX_CONCURRENT_AGENTS"
MAX_RETRIES = "SCHEDULER_MAX_RETRIES"
BACKOFF_BASE_SECONDS = "SCHEDULER_BACKOFF_BASE_SECONDS"
BACKOFF_MAX_SECONDS = "SCHEDULER_BACKOFF_MAX_SECONDS"
ALERT_AFTER_FAILURES = "SCHEDULER_ALERT_AFTER_FAILURES"
TICK_SECONDS = "SCHEDULER_TICK_SECONDS"
SESSION_RETENTION_DAYS = "SCHEDULER_SESSION_RETENTION_DAYS"
EVENT_RETENTION_HOURS = "SCHEDULER_EVENT_RETENTION_HOURS"
CORS_ORIGIN = "SCHEDULER_CORS_ORIGIN"  # the dashboard's origin when it is not the API's own; unset: no CORS

# --- extensions: resource names and wiring (set by infra per stage) ---------
ENVIRONMENT = "SCHEDULER_ENV"  # "local" (default) or "aws"
AGENTS_TABLE = "SCHEDULER_AGENTS_TABLE"
SESSIONS_TABLE = "SCHEDULER_SESSIONS_TABLE"
CONTROL_TABLE = "SCHEDULER_CONTROL_TABLE"
CONNECTIONS_TABLE = "SCHEDULER_CONNECTIONS_TABLE"
EVENTS_TABLE = "SCHEDULER_EVENTS_TABLE"
WORK_QUEUE_URL = "SCHEDULER_WORK_QUEUE_URL"
DLQ_URL = "SCHEDULER_DLQ_URL"
ALERT_TOPIC_ARN = "SCHEDULER_ALERT_TOPIC_ARN"
WS_ENDPOINT = "SCHEDULER_WS_ENDPOINT"  # https://{api}.execute-api.{region}.amazonaws.com/{stage}
JWT_SECRET_ARN = "SCHEDULER_JWT_SECRET_ARN"  # in AWS: read the secret from Secrets Manager
DUE_SHARDS = "SCHEDULER_DUE_SHARDS"
AWS_ENDPOINT_URL = "AWS_ENDPOINT_URL"  # local: the embedded moto server
AWS_REGION = "AWS_DEFAULT_REGION"

LOCAL_JWT_SECRET = "local-dev-secret"


@dataclass(frozen=True)
class Settings:
    api_port: int = 8000
    ws_port: int = 8001
    jwt_secret: str = LOCAL_JWT_SECRET
    max_concurrent_agents: int = 5
    max_retries: int = 3
    backoff_base_seconds: float = 1.0
    backoff_max_seconds: float = 300.0
    alert_after_failures: int = 3
    tick_seconds: float = 60.0
    session_retention_days: int = 30
    event_retention_hours: int = 24
    cors_origin: str = ""
    environment: str = "local"
    agents_table: str = "agent-scheduler-agents"
    sessions_table: str = "agent-scheduler-sessions"
    control_table: str = "agent-scheduler-control"
    connections_table: str = "agent-scheduler-connections"
    events_table: str = "agent-scheduler-events"
    work_queue_url: str = ""
    dlq_url: str = ""
    alert_topic_arn: str = ""
    ws_endpoint: str = ""
    jwt_secret_arn: str = ""
    due_shards: int = 8
    aws_endpoint_url: str | None = None
    region: str = "us-east-1"

    # Fixed engineering constants (not settings): documented here in one place.
    lookahead_seconds: int = 75  # the tick admits runs due up to this far ahead (> the tick period,
    # so a fire just after the next tick's start is already queued, not a tick late)
    resend_grace_seconds: int = 30  # an admitted, unclaimed run this late is re-sent
    lease_margin_seconds: int = 60  # slot lease = fire + timeout + margin

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> "Settings":
        env = os.environ if env is None else env
        environment = _choice(env, ENVIRONMENT, "local", ("local", "aws"))
        secret = env.get(JWT_SECRET)
        if secret is None or secret == "":
            if environment == "aws" and not env.get(JWT_SECRET_ARN):
                raise ConfigError(f"{JWT_SECRET} is required in AWS (or {JWT_SECRET_ARN})")
            secret = LOCAL_JWT_SECRET if environment == "local" else ""
        s = cls(
            api_port=_int(env, API_PORT, 8000, 1, 65535),
            ws_port=_int(env, WS_PORT, 8001, 1, 65535),
            jwt_secret=secret,
            max_concurrent_agents=_int(env, MAX_CONCURRENT_AGENTS, 5, 1, 1000),
            max_retries=_int(env, MAX_RETRIES, 3, 0, 10),
            backoff_base_seconds=_float(env, BACKOFF_BASE_SECONDS, 1.0, 0.0, 900.0),
            backoff_max_seconds=_float(env, BACKOFF_MAX_SECONDS, 300.0, 0.0, 900.0),
            alert_after_failures=_int(env, ALERT_AFTER_FAILURES, 3, 1, 1000),
            tick_seconds=_float(env, TICK_SECONDS, 60.0, 0.1, 3600.0),
            session_retention_days=_int(env, SESSION_RETENTION_DAYS, 30, 1, 3650),
            event_retention_hours=_int(env, EVENT_RETENTION_HOURS, 24, 1, 24 * 90),
            cors_origin=_origin(env, CORS_ORIGIN),
            environment=environment,
            agents_table=env.get(AGENTS_TABLE) or cls.agents_table,
            sessions_table=env.get(SESSIONS_TABLE) or cls.sessions_table,
            control_table=env.get(CONTROL_TABLE) or cls.control_table,
            connections_table=env.get(CONNECTIONS_TABLE) or cls.connections_table,
            events_table=env.get(EVENTS_TABLE) or cls.events_table,
            work_queue_url=env.get(WORK_QUEUE_URL, ""),
            dlq_url=env.get(DLQ_URL, ""),
            alert_topic_arn=env.get(ALERT_TOPIC_ARN, ""),
            ws_endpoint=env.get(WS_ENDPOINT, ""),
            jwt_secret_arn=env.get(JWT_SECRET_ARN, ""),
            due_shards=_int(env, DUE_SHARDS, 8, 1, 256),
            aws_endpoint_url=env.get(AWS_ENDPOINT_URL) or None,
            region=env.get(AWS_REGION) or env.get("AWS_REGION") or "us-east-1",
        )
        if s.backoff_max_seconds < s.backoff_base_seconds:
            raise ConfigError(
                f"{BACKOFF_MAX_SECONDS} ({s.backoff_max_seconds:g}) must not be below "
                f"{BACKOFF_BASE_SECONDS} ({s.backoff_base_seconds:g})"
            )
        return s

    def with_(self, **changes) -> "Settings":
        return replace(self, **changes)


def _raw(env: Mapping[str, str], name: str) -> str | None:
    value = env.get(name)
    if value is None or value.strip() == "":
        return None
    return value.strip()


def _int(env: Mapping[str, str], name: str, default: int, lo: int, hi: int) -> int:
    raw = _raw(env, name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a whole number, got {raw!r}") from None
    if not lo <= value <= hi:
        raise ConfigError(f"{name} must be between {lo} and {hi}, got {value}")
    return value


def _float(env: Mapping[str, str], name: str, default: float, lo: float, hi: float) -> float:
    raw = _raw(env, name)
    if raw is None:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a number, got {raw!r}") from None
    if value != value or not lo <= value <= hi:  # NaN or out of range
        raise ConfigError(f"{name} must be between {lo:g} and {hi:g}, got {raw}")
    return value


def _choice(env: Mapping[str, str], name: str, default: str, choices: tuple[str, ...]) -> str:
    raw = _raw(env, name)
    if raw is None:
        return default
    if raw not in choices:
        raise ConfigError(f"{name} must be one of {', '.join(choices)}, got {raw!r}")
    return raw


def _origin(env: Mapping[str, str], name: str) -> str:
    """One origin (``scheme://host[:port]``, no path), or empty. ``*`` is refused: the API takes bearer tokens."""
    raw = _raw(env, name)
    if raw is None:
        return ""
    if not re.fullmatch(r"https?://[A-Za-z0-9.-]+(:[0-9]{1,5})?", raw):
        raise ConfigError(f"{name} must be one origin like https://dash.example.com (no path, no '*'), got {raw!r}")
    return raw


def cors_origin(env: Mapping[str, str] | None = None) -> str:
    """``SCHEDULER_CORS_ORIGIN`` alone (the app reads it at import to configure its routes)."""
    return _origin(os.environ if env is None else env, CORS_ORIGIN)
