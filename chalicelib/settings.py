"""Settings, read once from the environment into a frozen object.

A bad value raises ``ConfigError`` naming the variable, which stops start-up.
An explicit argument beats the environment: ``Settings.from_env({...})``.
"""
from __future__ import annotations

import ipaddress
import os
import re
from dataclasses import dataclass, replace
from typing import Mapping
from urllib.parse import urlsplit

from chalicelib import limits
from chalicelib.errors import ConfigError

# --- the public settings: the README's Settings table lists each ---------
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
SYNC_WAIT_SECONDS = "SCHEDULER_SYNC_WAIT_SECONDS"  # longest wait for a synchronous agent answer (1..840)
PUBLIC_URL = "SCHEDULER_PUBLIC_URL"  # base of the agents' callback URLs (ends in /api)
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
PENDING_SHARDS = "SCHEDULER_PENDING_SHARDS"
AWS_ENDPOINT_URL = "AWS_ENDPOINT_URL"  # local: the embedded moto server
MAX_RATE_LIMITED_WAITS = "SCHEDULER_MAX_RATE_LIMITED_WAITS"
TENANT_MAX_CONCURRENT = "SCHEDULER_TENANT_MAX_CONCURRENT"  # one tenant's runs holding slots; unset: the global cap
PRIORITY_AGING_SECONDS = "SCHEDULER_PRIORITY_AGING_SECONDS"  # a waiting run rises one priority per period; 0: off
SIGNING_KEY_ID = "SCHEDULER_SIGNING_KEY_ID"  # the KMS key that encrypts webhook agents' signing secrets
LOG_LEVEL = "SCHEDULER_LOG_LEVEL"  # DEBUG, INFO (default), WARNING, ERROR
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
AWS_REGION = "AWS_DEFAULT_REGION"

# --- extensions: what agents may reach ---------------------------------------
HTTP_ALLOW_CIDRS = "SCHEDULER_HTTP_ALLOW_CIDRS"  # ranges http agents may reach although refused by default
LAMBDA_ALLOWED = "SCHEDULER_LAMBDA_ALLOWED"  # the functions a tenant's lambda agents may invoke
DEFAULT_LAMBDA_ALLOWED = "agent-scheduler-agent-{tenant}-*"
_LAMBDA_PATTERN = re.compile(r"^([A-Za-z0-9_*-]*-)?\{tenant\}(-[A-Za-z0-9_*-]*)?$")

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
    pending_shards: int = 1
    aws_endpoint_url: str | None = None
    region: str = "us-east-1"
    http_allow_cidrs: tuple[str, ...] = ()  # normalised CIDRs, e.g. ("10.1.0.0/16",)
    lambda_allowed: str = DEFAULT_LAMBDA_ALLOWED
    max_rate_limited_waits: int = limits.MAX_RATE_LIMITED_WAITS_DEFAULT
    log_level: str = "INFO"
    tenant_max_concurrent: int = 0  # 0: the global cap
    priority_aging_seconds: int = 600
    sync_wait_seconds: int = limits.SYNC_WAIT_SECONDS_MAX
    signing_key_id: str = ""
    public_url: str = ""  # the REST base agents call back (no trailing slash); "" = the local one

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
            max_retries=_int(env, MAX_RETRIES, 3, 0, limits.MAX_RETRIES_LIMIT),
            backoff_base_seconds=_float(env, BACKOFF_BASE_SECONDS, 1.0, 0.0, 900.0),
            backoff_max_seconds=_float(env, BACKOFF_MAX_SECONDS, 300.0, 0.0, 900.0),
            alert_after_failures=_int(env, ALERT_AFTER_FAILURES, 3, 1, 1000),
            tick_seconds=_float(env, TICK_SECONDS, 60.0, 0.1, 3600.0),
            session_retention_days=_int(env, SESSION_RETENTION_DAYS, 30, 1, 3650),
            event_retention_hours=_int(env, EVENT_RETENTION_HOURS, 24, 1, 24 * 90),
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
            pending_shards=_int(env, PENDING_SHARDS, 1, 1, 64),
            aws_endpoint_url=env.get(AWS_ENDPOINT_URL) or None,
            region=env.get(AWS_REGION) or env.get("AWS_REGION") or "us-east-1",
            http_allow_cidrs=_cidrs(env, HTTP_ALLOW_CIDRS),
            lambda_allowed=_lambda_pattern(env, LAMBDA_ALLOWED),
            max_rate_limited_waits=_int(env, MAX_RATE_LIMITED_WAITS, limits.MAX_RATE_LIMITED_WAITS_DEFAULT, 0,
                                        limits.MAX_RATE_LIMITED_WAITS_LIMIT),
            log_level=read_log_level(env),
            cors_origin=read_cors_origin(env),
            tenant_max_concurrent=_int(env, TENANT_MAX_CONCURRENT, 0, 1, 1000),
            priority_aging_seconds=_int(env, PRIORITY_AGING_SECONDS, 600, 0, 7 * 86400),
            sync_wait_seconds=_int(env, SYNC_WAIT_SECONDS, limits.SYNC_WAIT_SECONDS_MAX, 1, limits.SYNC_WAIT_SECONDS_MAX),
            signing_key_id=(env.get(SIGNING_KEY_ID) or "").strip(),
            public_url=_public_url(env),
        )
        if s.backoff_max_seconds < s.backoff_base_seconds:
            raise ConfigError(
                f"{BACKOFF_MAX_SECONDS} ({s.backoff_max_seconds:g}) must not be below "
                f"{BACKOFF_BASE_SECONDS} ({s.backoff_base_seconds:g})"
            )
        return s

    def with_(self, **changes) -> "Settings":
        return replace(self, **changes)

    @property
    def callback_base(self) -> str:
        """The REST base agents call back: ``SCHEDULER_PUBLIC_URL``, else the one ``make run`` prints."""
        return self.public_url or f"http://127.0.0.1:{self.api_port}/api"


def read_log_level(env: Mapping[str, str] | None = None) -> str:
    """``SCHEDULER_LOG_LEVEL`` alone (logging is set up before the rest of the settings are read)."""
    env = os.environ if env is None else env
    raw = _raw(env, LOG_LEVEL)
    return _choice({LOG_LEVEL: raw.upper()}, LOG_LEVEL, "INFO", LOG_LEVELS) if raw else "INFO"


def read_cors_origin(env: Mapping[str, str] | None = None) -> str:
    """``SCHEDULER_CORS_ORIGIN`` alone: one origin ``scheme://host[:port]``, or "" (no CORS)."""
    env = os.environ if env is None else env
    raw = _raw(env, CORS_ORIGIN)
    if raw is None:
        return ""
    if not _http_url(raw, path_allowed=False):
        raise ConfigError(f"{CORS_ORIGIN} must be one origin like https://dashboard.example.com, got {raw!r}")
    return raw


def _http_url(raw: str, *, path_allowed: bool) -> bool:
    """An http(s) URL with a host, a valid port, no credentials, query or fragment (and no
    path unless ``path_allowed``)."""
    try:
        parts = urlsplit(raw)
        parts.port  # noqa: B018 (raises on a bad port)
    except ValueError:
        return False
    return not (parts.scheme not in ("http", "https") or not parts.hostname or (parts.path and not path_allowed)
                or parts.query or parts.fragment or parts.username or parts.password)


def _public_url(env: Mapping[str, str]) -> str:
    """``SCHEDULER_PUBLIC_URL``: an http(s) URL without query or fragment, kept without a trailing slash."""
    raw = _raw(env, PUBLIC_URL)
    if raw is None:
        return ""
    if not _http_url(raw, path_allowed=True):
        raise ConfigError(f"{PUBLIC_URL} must be the API's base URL like https://api.example.com/api, got {raw!r}")
    return raw.rstrip("/")


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


def _cidrs(env: Mapping[str, str], name: str) -> tuple[str, ...]:
    """Comma-separated CIDRs (IPv4 or IPv6; a bare address is a /32 or /128)."""
    raw = _raw(env, name)
    if raw is None:
        return ()
    out = []
    for part in raw.split(","):
        part = part.strip()
        if not part:
            continue
        try:
            out.append(str(ipaddress.ip_network(part, strict=False)))
        except ValueError:
            raise ConfigError(f"{name}: {part!r} is not a CIDR range such as 10.1.0.0/16 or fd00::/8") from None
    return tuple(out)


def _lambda_pattern(env: Mapping[str, str], name: str) -> str:
    """A function-name pattern holding ``{tenant}`` once; ``*`` stands for one name segment.

    ``{tenant}`` stands alone between ``-`` separators (or the ends), so one tenant's
    functions are told apart from those of a tenant whose id starts or ends the same way.
    """
    raw = _raw(env, name)
    if raw is None:
        return DEFAULT_LAMBDA_ALLOWED
    if not _LAMBDA_PATTERN.match(raw):
        raise ConfigError(
            f"{name} must be a function name pattern holding {{tenant}} once, between '-' "
            f"separators or the ends (letters, digits, '-', '_' and '*'), such as {DEFAULT_LAMBDA_ALLOWED}; got {raw!r}"
        )
    return raw
def cors_origin(env: Mapping[str, str] | None = None) -> str:
    """``SCHEDULER_CORS_ORIGIN`` alone (the app reads it at import to configure its routes)."""
    return read_cors_origin(env)
